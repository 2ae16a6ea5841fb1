"""cloudevents_sdk.py: what an upstream team does with the official CloudEvents
SDK for Python (cloudevents 1.x, its Kafka binding) and confluent-kafka.

  cloudevents_sdk.py produce TOPIC MODE CE_ID TYPE KEY DATA_JSON
      MODE: binary | structured | structured-bytes (data given as bytes, so
      the SDK writes data_base64). Sends one event and waits for the broker.
  cloudevents_sdk.py consume TOPIC GROUP MIN_RECORDS TIMEOUT_S
      Reads TOPIC from the beginning and parses every record with the SDK
      (from_binary when it has a ce_specversion header, else from_structured);
      prints one JSON line per record: its mode, attributes and data.
      Stops once MIN_RECORDS were read and the topic is idle for 2 s, or at
      the timeout; exits 1 when a record does not parse.

Bootstrap servers from KAFKA_BOOTSTRAP_SERVERS. Run with the interpreter of
<repo>/.cache/interop/venv (ops/install-deps --test-tools).
"""
import json
import os
import sys
import time

from cloudevents.http import CloudEvent
from cloudevents.kafka import KafkaMessage, from_binary, from_structured, to_binary, to_structured
from confluent_kafka import Consumer, Producer


def produce(topic, mode, ce_id, ce_type, key, data_json):
    attrs = {"type": ce_type, "source": "sdk/python", "id": ce_id,
             "datacontenttype": "application/json", "partitionkey": key}
    data = json.loads(data_json)
    if mode == "structured-bytes":
        event = CloudEvent(attrs, json.dumps(data).encode())
        msg = to_structured(event)
    elif mode == "structured":
        msg = to_structured(CloudEvent(attrs, data))
    elif mode == "binary":
        msg = to_binary(CloudEvent(attrs, data))
    else:
        sys.exit("unknown mode " + mode)
    errors = []
    p = Producer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                  "enable.idempotence": True})
    p.produce(topic, key=msg.key, value=msg.value, headers=list(msg.headers.items()),
              on_delivery=lambda err, m: errors.append(err) if err else None)
    if p.flush(30) != 0 or errors:
        sys.exit("not delivered: %s" % errors)
    # What went out, for the test's log.
    print(json.dumps({"mode": mode, "key": msg.key.decode() if isinstance(msg.key, bytes) else msg.key,
                      "headers": {k: v.decode() for k, v in msg.headers.items()}}))


def consume(topic, group, min_records, timeout_s):
    c = Consumer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                  "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    seen, bad, last = 0, 0, time.time()
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            if seen >= min_records and time.time() - last > 2:
                break
            continue
        if m.error():
            continue
        last = time.time()
        seen += 1
        headers = dict(m.headers() or [])
        msg = KafkaMessage(headers=headers, key=m.key(), value=m.value())
        # As the SDK's users must: binary when ce_specversion is a header.
        mode = "binary" if "ce_specversion" in headers else "structured"
        try:
            ev = from_binary(msg) if mode == "binary" else from_structured(msg)
        except Exception as e:  # the SDK could not read orderflow's event
            bad += 1
            print(json.dumps({"error": repr(e)}))
            continue
        print(json.dumps({"mode": mode, "id": ev["id"], "type": ev["type"], "source": ev["source"],
                          "subject": ev.get("subject"), "key": m.key().decode(),
                          "data": ev.data}))
    c.close()
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["produce"] and len(sys.argv) == 8:
        produce(*sys.argv[2:8])
    elif sys.argv[1:2] == ["consume"] and len(sys.argv) == 6:
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(__doc__)
