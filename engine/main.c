/* cmi: the command line (docs/configuration.md, "Commands" and "Options"). */
#include "config.h"

#include <libxml/parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/config.h"
#include "core/secrets.h"
#include "core/str.h"
#include "engine.h"
#include "plugin/plugin.h"

#define CMI_LOCAL_DEPLOY_DIR "synapse-configs/default"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cmi run [DIR] [options]    serve the deployment in DIR (default: synapse-configs/default\n"
            "                                  when the current folder has one, else\n"
            "                                  " CMI_DEPLOY_DIR ")\n"
            "       cmi check DIR [options]    load DIR, print every error as file:line, exit 0 or 1\n"
            "       cmi describe CONNECTOR     a connector's operations and parameters\n"
            "       cmi version                print the version\n"
            "       cmi --help                 this text (also cmi run --help, cmi check --help)\n"
            "\n"
            "options:\n"
            "  --http-port N          HTTP port (default 8290; 0 picks a free one)\n"
            "  --http-host ADDR       address to listen on (default 0.0.0.0)\n"
            "  --https-port N         HTTPS port (default 8253; 0 picks a free one), served\n"
            "                         when a certificate is given\n"
            "  --tls-cert FILE        the HTTPS certificate: PEM chain (leaf first) or PKCS#12\n"
            "  --tls-key FILE         its PEM private key (other TLS settings: --config)\n"
            "  --workers N            worker threads (default: number of cores)\n"
            "  --max-body-size SIZE   largest request body, e.g. 10MiB (default); larger gets 413\n"
            "  --idle-timeout DUR     HTTP request/keep-alive idle timeout, e.g. 10s (default)\n"
            "  --drain-timeout DUR    time in-flight messages get at shutdown (default 30s)\n"
            "  --watch BOOL           reload the deployment when its files change (default\n"
            "                         false; SIGHUP reloads it in any case)\n"
            "  --watch-delay DUR      how long the files must stay unchanged first (500ms)\n"
            "  --http2 BOOL           also accept HTTP/2 (cleartext prior knowledge and h2c\n"
            "                         upgrade); false by default\n"
            "  --http2-request-rate N requests one HTTP/2 connection may make per second\n"
            "                         (default 2000, 0 = no limit); past it it is closed\n"
            "  --http2-reset-rate N   requests one HTTP/2 connection may reset per second\n"
            "                         (default 100, 0 = no limit); past it it is closed\n"
            "  --internal-port N      the internal port: /metric-service/metrics, /healthz,\n"
            "                         /liveness (default 9201, MI's; 0 picks a free one; off)\n"
            "  --internal-host ADDR   its address (default 127.0.0.1)\n"
            "  --metrics BOOL         count MI's API, proxy and inbound metrics (default true)\n"
            "  --readiness LIST       what /healthz waits for besides the deployment:\n"
            "                         connections,inbound-endpoints (default) or deployment\n"
            "  --connectors PATH      colon-separated folders of connector modules (also\n"
            "                         CMI_CONNECTORS_PATH; default " CMI_CONNECTORS_DIR ",\n"
            "                         or the modules of the build tree cmi runs from)\n"
            "  --config FILE          server config file (XML, <cmi>...</cmi>; flags win over it)\n"
            "  --log-level LEVEL      trace, debug, info (default), warn, error; then levels\n"
            "                         of components: info,rabbitmq=debug,api:Orders=trace\n"
            "  --log-format FORMAT    text (default) or json\n"
            "  --access-log FILE      a line per HTTP request to FILE (appended; - for\n"
            "                         standard error); off by default\n"
            "  --access-log-format F  text (default) or json\n");
}

/* `cmi run --help`: the usage, wherever the flag stands (not an option
 * that wants a value). */
static int asks_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

/* `cmi run` without a folder: the deployment of the current folder (a
 * clone of the repository), else the installed one. */
static const char *default_deployment(void)
{
    struct stat st;
    if (stat(CMI_LOCAL_DEPLOY_DIR, &st) == 0 && S_ISDIR(st.st_mode))
        return CMI_LOCAL_DEPLOY_DIR;
    return CMI_DEPLOY_DIR;
}

static int bad_option(const char *opt, const char *value, const char *what)
{
    fprintf(stderr, "cmi: %s '%s': %s\n", opt, value ? value : "", what);
    return -1;
}

/* Options are applied in two passes so that --config is read before the
 * flags that override it, wherever it appears. */
static int parse_option(cmi_settings_t *s, const char *opt, const char *v)
{
    uint64_t u;
    if (strcmp(opt, "--http-port") == 0) {
        if (cmi_parse_uint(v, 65535, &u) != 0)
            return bad_option(opt, v, "not a port number (0..65535)");
        s->http_port = (int)u;
    } else if (strcmp(opt, "--https-port") == 0) {
        if (cmi_parse_uint(v, 65535, &u) != 0)
            return bad_option(opt, v, "not a port number (0..65535)");
        s->https_port = (int)u;
    } else if (strcmp(opt, "--tls-cert") == 0) {
        s->tls.cert_file = v;
    } else if (strcmp(opt, "--tls-key") == 0) {
        s->tls.key_file = v;
        s->https_asked = 1;
    } else if (strcmp(opt, "--http-host") == 0) {
        s->http_host = v;
    } else if (strcmp(opt, "--workers") == 0) {
        if (cmi_parse_uint(v, 256, &u) != 0)
            return bad_option(opt, v, "not a worker count (0..256, 0 = cores)");
        s->workers = (unsigned)u;
    } else if (strcmp(opt, "--max-body-size") == 0) {
        if (cmi_parse_size(v, &s->max_body) != 0)
            return bad_option(opt, v, "not a size (e.g. 10MiB)");
    } else if (strcmp(opt, "--idle-timeout") == 0) {
        if (cmi_parse_duration_ms(v, &s->idle_timeout_ms) != 0 || s->idle_timeout_ms == 0)
            return bad_option(opt, v, "not a duration (e.g. 10s)");
    } else if (strcmp(opt, "--drain-timeout") == 0) {
        if (cmi_parse_duration_ms(v, &s->drain_timeout_ms) != 0)
            return bad_option(opt, v, "not a duration (e.g. 30s)");
    } else if (strcmp(opt, "--watch") == 0) {
        if (cmi_parse_bool(v, &s->watch) != 0)
            return bad_option(opt, v, "must be 'true' or 'false'");
    } else if (strcmp(opt, "--watch-delay") == 0) {
        if (cmi_settings_parse_watch_delay(v, &s->watch_delay_ms) != 0)
            return bad_option(opt, v, "not a duration from 10ms to 1min (e.g. 500ms)");
    } else if (strcmp(opt, "--http2") == 0) {
        if (cmi_parse_bool(v, &s->http2) != 0)
            return bad_option(opt, v, "must be 'true' or 'false'");
    } else if (strcmp(opt, "--http2-request-rate") == 0) {
        if (cmi_settings_parse_rate(v, &s->http2_request_rate) != 0)
            return bad_option(opt, v, "not a rate (requests per connection per second, 0 = no limit)");
    } else if (strcmp(opt, "--http2-reset-rate") == 0) {
        if (cmi_settings_parse_rate(v, &s->http2_reset_rate) != 0)
            return bad_option(opt, v, "not a rate (resets per connection per second, 0 = no limit)");
    } else if (strcmp(opt, "--access-log") == 0) {
        s->access_log = strcmp(v, "off") == 0 ? NULL : v;
    } else if (strcmp(opt, "--access-log-format") == 0) {
        if (cmi_settings_parse_access_format(v, &s->access_log_json) != 0)
            return bad_option(opt, v, "must be 'text' or 'json'");
    } else if (strcmp(opt, "--internal-port") == 0) {
        if (cmi_settings_parse_internal_port(v, &s->internal_port) != 0)
            return bad_option(opt, v, "not a port number (0..65535) or 'off'");
    } else if (strcmp(opt, "--internal-host") == 0) {
        s->internal_host = v;
    } else if (strcmp(opt, "--metrics") == 0) {
        if (cmi_parse_bool(v, &s->metrics) != 0)
            return bad_option(opt, v, "must be 'true' or 'false'");
    } else if (strcmp(opt, "--readiness") == 0) {
        if (cmi_settings_parse_readiness(v, &s->readiness) != 0)
            return bad_option(opt, v, "must list 'connections', 'inbound-endpoints' (comma-separated) or be "
                                      "'deployment'");
    } else if (strcmp(opt, "--connectors") == 0) {
        s->connectors_path = v;
    } else if (strcmp(opt, "--log-level") == 0) {
        char why[160];
        if (cmi_log_spec_parse(v, &s->log_level, why, sizeof(why)) != 0)
            return bad_option(opt, v, why);
        s->log_spec = v;
    } else if (strcmp(opt, "--log-format") == 0) {
        if (strcmp(v, "text") == 0)
            s->log_format = CMI_LOG_FORMAT_TEXT;
        else if (strcmp(v, "json") == 0)
            s->log_format = CMI_LOG_FORMAT_JSON;
        else
            return bad_option(opt, v, "must be 'text' or 'json'");
    } else if (strcmp(opt, "--config") != 0) {
        fprintf(stderr, "cmi: unknown option '%s' (see cmi --help)\n", opt);
        return -1;
    }
    return 0;
}

static int parse_args(cmi_settings_t *s, int argc, char **argv, int need_dir)
{
    const char *dir = NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < argc; i++) {
            const char *a = argv[i];
            if (strncmp(a, "--", 2) != 0) {
                if (pass == 1)
                    continue;
                if (dir != NULL) {
                    fprintf(stderr, "cmi: more than one deployment folder given ('%s' and '%s')\n", dir, a);
                    return -1;
                }
                dir = a;
                continue;
            }
            const char *eq = strchr(a, '=');
            char opt[64];
            const char *v;
            if (eq != NULL) {
                snprintf(opt, sizeof(opt), "%.*s", (int)(eq - a), a);
                v = eq + 1;
            } else {
                snprintf(opt, sizeof(opt), "%s", a);
                if (i + 1 >= argc) {
                    fprintf(stderr, "cmi: option '%s' needs a value\n", a);
                    return -1;
                }
                v = argv[++i];
            }
            int is_config = strcmp(opt, "--config") == 0;
            if (pass == 0 && is_config && cmi_settings_load_file(s, v) != 0)
                return -1;
            if (pass == 1 && !is_config && parse_option(s, opt, v) != 0)
                return -1;
        }
    }
    if (dir != NULL)
        s->deploy_dir = dir;
    else if (!need_dir)
        s->deploy_dir = default_deployment();
    else {
        fprintf(stderr, "cmi: check needs a deployment folder (cmi check DIR)\n");
        return -1;
    }
    return 0;
}

/* The connectors path CMI_CONNECTORS_PATH gives, before the flags. */
static void settings_from_env(cmi_settings_t *s)
{
    const char *env_path = getenv("CMI_CONNECTORS_PATH");
    if (env_path != NULL && *env_path != '\0')
        s->connectors_path = env_path;
}

/* A reload reads the settings again as main did (engine.h). */
static int reread_settings(cmi_settings_t *fresh, int argc, char **argv)
{
    cmi_settings_defaults(fresh);
    settings_from_env(fresh);
    return parse_args(fresh, argc, argv, 0);
}

static int cmd_check(cmi_settings_t *s)
{
    cmi_diag_t diag;
    cmi_diag_init(&diag, stderr);
    cmi_plugins_t *plugins = cmi_engine_load_plugins(s, &diag);
    cmi_config_t *cfg = plugins ? cmi_config_load_with(s->deploy_dir, plugins, 1, &diag) : NULL;
    if (cfg == NULL) {
        fprintf(stderr, "%s: %zu error(s), %zu warning(s)\n", s->deploy_dir, diag.errors, diag.warnings);
        cmi_plugins_destroy(plugins);
        return 1;
    }
    printf("%s: OK: %zu API(s), %zu proxy service(s), %zu sequence(s), %zu endpoint(s), %zu local entr%s, "
           "%zu inbound endpoint(s), %zu warning(s)\n",
           s->deploy_dir, cfg->napis, cfg->nproxies, cfg->sequences.count, cfg->endpoints.count, cfg->local_entries.count,
           cfg->local_entries.count == 1 ? "y" : "ies", cfg->ninbounds, diag.warnings);
    cmi_config_destroy(cfg);
    cmi_plugins_destroy(plugins);
    return 0;
}

static int cmd_describe(cmi_settings_t *s, const char *name)
{
    cmi_diag_t diag;
    cmi_diag_init(&diag, stderr);
    cmi_plugins_t *plugins = cmi_engine_load_plugins(s, &diag);
    if (plugins == NULL)
        return 1;
    const cmi_module_t *m = cmi_plugins_find(plugins, name, strlen(name));
    int rc = 0;
    if (m != NULL) {
        cmi_module_describe(m, stdout);
    } else {
        fprintf(stderr, "cmi: no connector named '%s' on the connectors path (%s)", name,
                *plugins->search_path ? plugins->search_path : "empty");
        for (size_t i = 0; i < plugins->count; i++)
            fprintf(stderr, "%s%s", i ? ", " : "; loaded: ", plugins->mods[i].desc->name);
        fprintf(stderr, "\n");
        rc = 1;
    }
    cmi_plugins_destroy(plugins);
    return rc;
}

/* Before the deployment and any thread: the store is read-only from then on. */
static int load_secrets(const cmi_settings_t *s)
{
    char err[512];
    if (s->secrets_file == NULL || cmi_secrets_load(s->secrets_file, err, sizeof(err)) == 0)
        return 0;
    fprintf(stderr, "cmi: %s\n", err);
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("cmi %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0 && strcmp(cmd, "describe") != 0) {
        fprintf(stderr, "cmi: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    if (asks_help(argc - 2, argv + 2)) {
        usage(stdout);
        return 0;
    }
    LIBXML_TEST_VERSION
    cmi_settings_t s;
    cmi_settings_defaults(&s);
    settings_from_env(&s);
    s.reread = reread_settings;
    s.argc = argc - 2;
    s.argv = argv + 2;
    int rc;
    int describe = strcmp(cmd, "describe") == 0;
    if (describe && (argc < 3 || argv[2][0] == '-')) {
        fprintf(stderr, "cmi: describe needs a connector name (cmi describe rabbitmq)\n");
        rc = 2;
    } else if (parse_args(&s, argc - 2 - describe, argv + 2 + describe, strcmp(cmd, "check") == 0) != 0) {
        rc = 2;
    } else if (load_secrets(&s) != 0) {
        rc = 1;
    } else {
        cmi_log_configure(s.log_level, s.log_format);
        cmi_log_configure_components(s.log_spec);
        rc = describe ? cmd_describe(&s, argv[2]) : strcmp(cmd, "check") == 0 ? cmd_check(&s) : cmi_engine_run(&s);
    }
    cmi_secrets_clear();
    cmi_settings_dispose(&s);
    xmlCleanupParser();
    return rc;
}
