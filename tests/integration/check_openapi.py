"""check_openapi.py: checks recorded gateway exchanges against gateway/openapi.json.

  check_openapi.py OPENAPI_JSON EXCHANGES_JSONL

Each line of EXCHANGES_JSONL is {"method", "path", "status", "body"} as the
test saw it. Every exchange must match a documented path template and
method, its status must be documented for that operation, and a JSON body
must validate against the documented schema (the subset of JSON Schema the
document uses: type, required, properties, items, enum, pattern, minimum,
maximum, minItems, maxItems, nullable, $ref). Every documented operation
must have been exercised. Prints one line per problem; exits 1 on any.
"""
import json
import re
import sys


def resolve(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = doc
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def validate(doc, schema, value, where, problems):
    schema = resolve(doc, schema)
    if value is None:
        if not schema.get("nullable"):
            problems.append("%s: null where %s is expected" % (where, schema.get("type", "a value")))
        return
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    t = schema.get("type")
    if t == "integer":
        if not (isinstance(value, int) and not isinstance(value, bool)) and not (
                isinstance(value, float) and value.is_integer()):
            problems.append("%s: %r is not an integer" % (where, value))
            return
    elif t == "number":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append("%s: %r is not a number" % (where, value))
            return
    elif t in types and not isinstance(value, types[t]):
        problems.append("%s: %r is not of type %s" % (where, value, t))
        return
    if "enum" in schema and value not in schema["enum"]:
        problems.append("%s: %r is not one of %s" % (where, value, schema["enum"]))
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        problems.append("%s: %r does not match %s" % (where, value, schema["pattern"]))
    if "minimum" in schema and value < schema["minimum"]:
        problems.append("%s: %r below %s" % (where, value, schema["minimum"]))
    if "maximum" in schema and value > schema["maximum"]:
        problems.append("%s: %r above %s" % (where, value, schema["maximum"]))
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                problems.append("%s: missing member %r" % (where, name))
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                validate(doc, sub, value[name], "%s.%s" % (where, name), problems)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            problems.append("%s: fewer than %d items" % (where, schema["minItems"]))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append("%s: more than %d items" % (where, schema["maxItems"]))
        if "items" in schema:
            for i, v in enumerate(value):
                validate(doc, schema["items"], v, "%s[%d]" % (where, i), problems)


def main():
    doc = json.load(open(sys.argv[1]))
    templates = []
    for template in doc["paths"]:
        rx = "^" + re.sub(r"\\\{[^/]+\\\}", "[^/]+", re.escape(template)) + "$"
        templates.append((template, re.compile(rx)))
    problems, seen, n = [], set(), 0
    for line in open(sys.argv[2]):
        ex = json.loads(line)
        n += 1
        method = ex["method"].lower()
        path = ex["path"].split("?")[0]
        match = [t for t, rx in templates if rx.match(path)]
        if not match:
            if ex["status"] != 404:
                problems.append("%s %s: undocumented path answered %s" % (ex["method"], path, ex["status"]))
            continue
        ops = doc["paths"][match[0]]
        if method not in ops:
            if ex["status"] != 405:
                problems.append("%s %s: undocumented method answered %s" % (ex["method"], match[0], ex["status"]))
            continue
        seen.add((match[0], method))
        responses = ops[method]["responses"]
        status = str(ex["status"])
        if status not in responses:
            problems.append("%s %s: status %s is not documented" % (ex["method"], match[0], status))
            continue
        content = resolve(doc, responses[status]).get("content", {}).get("application/json")
        if content is not None:
            try:
                body = json.loads(ex["body"])
            except ValueError:
                problems.append("%s %s %s: body is not JSON" % (ex["method"], match[0], status))
                continue
            validate(doc, content["schema"], body, "%s %s %s" % (ex["method"], match[0], status), problems)
    for template, ops in doc["paths"].items():
        for method in ops:
            if (template, method) not in seen:
                problems.append("%s %s: documented but never exercised" % (method.upper(), template))
    for p in problems:
        print(p)
    print("# %d exchange(s) checked against %s, %d problem(s)" % (n, sys.argv[1], len(problems)))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
