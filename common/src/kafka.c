/* kafka.c: what the consumer (kafka_consumer.c) and the producer (kafka_producer.c) share: the
 * configuration (defaults, KAFKA_* variables, the error callback) and the io-event pipe. */
#include "kafka_internal.h"

#include "orderflow/log.h"

#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int of_kafka__set_prop(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                       size_t errstr_size)
{
    if (rd_kafka_conf_set(conf, name, value, errstr, errstr_size) != RD_KAFKA_CONF_OK)
        return OF_EINVAL;
    return 0;
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    /* Most errors are transient (broker down, resolve failures): librdkafka
     * keeps retrying, so they are warnings; a fatal one is an error. */
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
        of_log_error("kafka fatal error %s: %s", rd_kafka_err2name(orig), buf);
        /* The handle cannot go on (an idempotent producer's sequence is
         * broken, a consumer fenced): its owner is told, once. */
        if (rd_kafka_type(rk) == RD_KAFKA_PRODUCER) {
            of_producer *p = opaque;
            if (p != NULL && !p->fatal) {
                p->fatal = true;
                if (p->on_fatal != NULL)
                    p->on_fatal(p);
            }
        } else {
            of_consumer *c = opaque;
            if (c != NULL && !c->fatal) {
                c->fatal = true;
                if (c->on_fatal != NULL)
                    c->on_fatal(c);
            }
        }
        return;
    }
    of_log_warn("kafka %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* Applies KAFKA_<NAME>=value environment variables as librdkafka properties. */
static int apply_env(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
{
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        char name[128];
        size_t len;
        if (strncmp(*e, "KAFKA_", 6) != 0 || eq == NULL)
            continue;
        if (strncmp(*e, "KAFKA_BOOTSTRAP_SERVERS=", 24) == 0)
            continue;
        len = (size_t)(eq - (*e + 6));
        if (len == 0 || len >= sizeof name)
            continue;
        for (size_t i = 0; i < len; i++) {
            char ch = (*e)[6 + i];
            name[i] = ch == '_' ? '.' : (char)tolower((unsigned char)ch);
        }
        name[len] = '\0';
        if (of_kafka__set_prop(conf, name, eq + 1, errstr, errstr_size) != 0)
            return OF_ESTART;
        of_log_info("kafka property \"%s\" set from environment", name);
    }
    return 0;
}

rd_kafka_conf_t *of_kafka_conf_new(const char *bootstrap, const char *client_id, char *errstr,
                                   size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (of_kafka__set_prop(conf, "bootstrap.servers", bootstrap, errstr, errstr_size) != 0 ||
        of_kafka__set_prop(conf, "client.id", client_id ? client_id : "orderflow", errstr,
                           errstr_size) != 0 ||
        apply_env(conf, errstr, errstr_size) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, of_log_rdkafka_cb);
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    return conf;
}

/* Sets a default only when the environment did not already choose a value. */
int of_kafka__set_default(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                          size_t errstr_size)
{
    char cur[256];
    size_t size = sizeof cur;
    char envname[128];
    size_t i = 0;
    snprintf(envname, sizeof envname, "KAFKA_");
    for (const char *r = name; *r != '\0' && i + 7 < sizeof envname; r++, i++)
        envname[6 + i] = *r == '.' ? '_' : (char)toupper((unsigned char)*r);
    envname[6 + i] = '\0';
    if (getenv(envname) != NULL && rd_kafka_conf_get(conf, name, cur, &size) == RD_KAFKA_CONF_OK)
        return 0;
    return of_kafka__set_prop(conf, name, value, errstr, errstr_size);
}

/* The io-event pipe: librdkafka writes a byte when its queue gets work. */
int of_kafka__open_pipe(int fds[2])
{
    if (pipe(fds) != 0)
        return OF_ESTART;
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) != 0 ||
            fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0) {
            close(fds[0]);
            close(fds[1]);
            return OF_ESTART;
        }
    }
    return 0;
}

void of_kafka__drain_pipe(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}
