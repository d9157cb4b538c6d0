/* libFuzzer target: HTTP requests through the real listener.  One engine
 * serves a small deployment (payload conversions, path and query
 * parameters, XPath and JSON paths, headers) on a loopback port from one
 * worker thread, HTTP/2 on and its per-connection budgets low; each input
 * is written to a new connection as raw bytes (HTTP/1.1 requests, pipelined
 * or not, or an HTTP/2 preface and frames), the connection is half-closed
 * and read until the server closes it.  Crashes, sanitizer reports and
 * hangs (a connection the server never closes) are what it looks for. */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "engine.h"
#include "http/server.h"
#include "runtime/msg.h"
#include "runtime/worker.h"

static const char api[] =
    "<api xmlns=\"http://ws.apache.org/ns/synapse\" name=\"F\" context=\"/f\">\n"
    "  <resource methods=\"POST\" uri-template=\"/tojson\"><inSequence>\n"
    "    <property name=\"messageType\" value=\"application/json\" scope=\"axis2\"/><respond/></inSequence></resource>\n"
    "  <resource methods=\"POST\" uri-template=\"/toxml\"><inSequence>\n"
    "    <property name=\"messageType\" value=\"application/xml\" scope=\"axis2\"/><respond/></inSequence></resource>\n"
    "  <resource methods=\"POST\" uri-template=\"/tosoap\"><inSequence>\n"
    "    <property name=\"messageType\" value=\"text/xml\" scope=\"axis2\"/><respond/></inSequence></resource>\n"
    "  <resource methods=\"POST PUT\" uri-template=\"/echo\"><inSequence><respond/></inSequence></resource>\n"
    "  <resource methods=\"POST\" uri-template=\"/xpath\"><inSequence>\n"
    "    <filter xpath=\"count(//*) &gt; 3\"><then><property name=\"many\" value=\"yes\"/></then></filter>\n"
    "    <payloadFactory media-type=\"json\"><format>{\"first\": \"$1\", \"many\": \"$2\"}</format>\n"
    "      <args><arg expression=\"//*[1]\"/><arg expression=\"$ctx:many\"/></args></payloadFactory>\n"
    "    <respond/></inSequence></resource>\n"
    "  <resource methods=\"POST\" uri-template=\"/json\"><inSequence>\n"
    "    <switch source=\"${payload.kind}\"><case regex=\"a.*\"><property name=\"k\" value=\"a\"/></case></switch>\n"
    "    <payloadFactory media-type=\"json\"><format>{\"n\": \"$1\", \"k\": \"$2\", \"v\": $3}</format>\n"
    "      <args><arg expression=\"${payload.items.length()}\"/><arg expression=\"$ctx:k\"/>\n"
    "      <arg expression=\"${payload.v}\"/></args></payloadFactory>\n"
    "    <respond/></inSequence></resource>\n"
    "  <resource methods=\"GET HEAD DELETE\" uri-template=\"/p/{a}/{b}?q={q}\"><inSequence>\n"
    "    <header name=\"X-A\" expression=\"${params.pathParams.a}\" scope=\"transport\"/>\n"
    "    <payloadFactory media-type=\"json\"><format>{\"a\": \"$1\", \"b\": \"$2\", \"q\": \"$3\", \"h\": \"$4\"}</format>\n"
    "      <args><arg expression=\"${params.pathParams.a}\"/><arg expression=\"${params.pathParams.b}\"/>\n"
    "      <arg expression=\"${params.queryParams.q}\"/><arg expression=\"$trp:X-Test\"/></args></payloadFactory>\n"
    "    <respond/></inSequence></resource>\n"
    "</api>\n";

static int port;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0)
        abort();
    fclose(f);
}

/* The engine of cmi_engine_run, without signals, connectors or the curl
 * thread, started once for the whole run. */
static void start_engine(void)
{
    static cmi_engine_t e;
    static char dir[64], path[128];
    snprintf(dir, sizeof(dir), "/tmp/cmi-fuzz-http-%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/api", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/api/f.xml", dir);
    write_file(path, api);
    cmi_log_configure(CMI_LOG_FATAL, CMI_LOG_FORMAT_TEXT);
    signal(SIGPIPE, SIG_IGN); /* as cmi_engine_run: a write to a closed peer is an error, not an exit */
    cmi_settings_defaults(&e.settings);
    e.settings.deploy_dir = dir;
    e.settings.max_body = 64 * 1024;
    e.settings.idle_timeout_ms = 2000;
    e.settings.http2 = 1;
    e.settings.http2_request_rate = 50;
    e.settings.http2_reset_rate = 10;
    cmi_msg_set_view_limit(4 * e.settings.max_body);
    cmi_diag_t diag;
    cmi_diag_init(&diag, stderr);
    e.config = cmi_config_load(dir, &diag);
    if (e.config == NULL)
        abort();
    int fd;
    char err[256];
    if (cmi_http_listen("127.0.0.1", 0, &fd, 1, &port, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        abort();
    }
    cmi_http_configure(&e);
    e.nworkers = 1;
    e.workers = cmi_xcalloc(1, sizeof(*e.workers));
    cmi_worker_set_config(&e.workers[0], e.config); /* the deployment it dispatches to (not started: set here) */
    cmi_worker_listen_t listen = {fd, NULL};
    if (cmi_worker_start(&e.workers[0], &e, 0, &e.h2o, &listen, 1, cmi_http_worker_accept) != 0)
        abort();
}

/* A connect interrupted by a signal goes on in the background: wait for
 * it, at most 5 s, and take its result. */
static int connect_finish(int s)
{
    struct pollfd p = {s, POLLOUT, 0};
    int n;
    do
        n = poll(&p, 1, 5000);
    while (n < 0 && errno == EINTR);
    int err = 0;
    socklen_t len = sizeof(err);
    if (n != 1 || getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        errno = n == 0 ? ETIMEDOUT : err != 0 ? err : errno;
        return -1;
    }
    return 0;
}

static int connect_loopback(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rc = s < 0 ? -1 : connect(s, (struct sockaddr *)&sa, sizeof(sa));
    if (rc != 0 && errno == EINTR)
        rc = connect_finish(s); /* libFuzzer's timer signal came first (seen in CI) */
    if (rc != 0) {
        /* Not the server's fault unless it says so: name the cause. */
        fprintf(stderr, "fuzz_http: cannot connect to 127.0.0.1:%d: %s\n", port, strerror(errno));
        abort();
    }
    return s;
}

/* Writes what the server takes while reading what it answers, so that
 * neither side blocks on a full buffer; returns when the server closed
 * the connection or after 5 s. */
static void converse(int s, const uint8_t *data, size_t size)
{
    char buf[65536];
    size_t sent = 0;
    int half_closed = 0;
    for (int waited = 0; waited < 5000;) {
        if (sent == size && !half_closed) {
            shutdown(s, SHUT_WR);
            half_closed = 1;
        }
        struct pollfd p = {s, (short)(POLLIN | (sent < size ? POLLOUT : 0)), 0};
        int n = poll(&p, 1, 100);
        if (n == 0) {
            waited += 100;
            continue;
        }
        if (p.revents & POLLIN) {
            ssize_t r = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                return;
        }
        if ((p.revents & POLLOUT) && sent < size) {
            ssize_t w = send(s, data + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0)
                sent = size; /* the server closed its side: nothing more goes in */
        }
    }
    fprintf(stderr, "fuzz_http: the server kept a half-closed connection open for 5 s\n");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (port == 0)
        start_engine();
    if (size > 256 * 1024)
        return 0;
    int s = connect_loopback();
    converse(s, data, size);
    close(s);
    return 0;
}
