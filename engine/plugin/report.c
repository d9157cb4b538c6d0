/* The connectors' readiness and metrics (host->report_*, ABI 1.6), asked
 * for by the internal port: every instance's and listener's report hook
 * runs on the service thread; samples are grouped by family, because the
 * Prometheus text format wants all the samples of a name together. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "engine.h"
#include "plugin/plugin.h"
#include "runtime/metrics.h"

typedef struct sample {
    const cmi_metric_def_t *def;
    const char *text; /* the sample lines, complete */
    struct sample *next;
} sample_t;

struct cmi_report {
    cmi_arena_t *arena;
    const char *label;  /* connection or inbound_endpoint */
    const char *noun;   /* "connection" or "inbound endpoint", for reasons */
    const char *owner;  /* its value: the local entry's key or the endpoint's name */
    sample_t *first, **last;
    size_t nsamples;
    int counts;            /* whether this owner's reasons count for readiness */
    cmi_strbuf_t *reasons; /* JSON strings, comma-separated */
    size_t nreasons;
};

#define MAX_REASONS 64 /* one deployment's worth; more would only hide the first */

void cmi_host_report_not_ready(cmi_report_t *r, const char *fmt, ...)
{
    if (r == NULL || !r->counts || r->nreasons >= MAX_REASONS)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *text = cmi_arena_vsprintf(r->arena, fmt, ap);
    va_end(ap);
    const char *who = cmi_arena_sprintf(r->arena, "%s %s: %s", r->noun, r->owner, text);
    if (r->nreasons++ > 0)
        cmi_strbuf_putc(r->reasons, ',');
    cmi_strbuf_putc(r->reasons, '"');
    cmi_strbuf_json_escaped(r->reasons, who, strlen(who));
    cmi_strbuf_putc(r->reasons, '"');
}

/* name{connection="KEY",a="b"...[,extra]} */
static void series(cmi_strbuf_t *b, const cmi_report_t *r, const char *name, const char *suffix,
                   const cmi_nv_t *labels, size_t n, const char *extra)
{
    cmi_strbuf_printf(b, "%s%s{%s=\"", name, suffix, r->label);
    cmi_metrics_label_value(b, r->owner);
    cmi_strbuf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        cmi_strbuf_printf(b, ",%s=\"", labels[i].name);
        cmi_metrics_label_value(b, labels[i].value ? labels[i].value : "");
        cmi_strbuf_putc(b, '"');
    }
    if (extra != NULL)
        cmi_strbuf_printf(b, ",%s", extra);
    cmi_strbuf_putc(b, '}');
}

/* Prometheus's [a-zA-Z_:][a-zA-Z0-9_:]* (no ':' in label names). */
static int is_name(const char *s, int colon)
{
    if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              (colon && *s == ':')))
            return 0;
    return 1;
}

/* What a connector declared must make a valid exposition: a family of
 * its own (cmi_ prefix, not an engine name), label names that are names
 * and not the host's.  A bad one is left out, and said once per family. */
static int valid(cmi_report_t *r, const cmi_metric_def_t *def, const cmi_nv_t *labels, size_t n)
{
    static const cmi_metric_def_t *warned[16]; /* the service thread's only */
    const char *why = NULL;
    if (def == NULL || !is_name(def->name, 1) || strncmp(def->name, "cmi_", 4) != 0 ||
        strcmp(def->name, "cmi_ready") == 0 || strncmp(def->name, "cmi_http_", 9) == 0 ||
        strncmp(def->name, "cmi_messages_", 13) == 0)
        why = "its name is not cmi_CONNECTOR_... made of [a-zA-Z0-9_:]";
    else if (def->type > CMI_METRIC_HISTOGRAM || def->help == NULL)
        why = "no such type, or no HELP text";
    else if (def->type == CMI_METRIC_HISTOGRAM && (def->buckets == NULL || def->nbuckets == 0 || def->nbuckets > 64))
        why = "a histogram needs 1 to 64 bucket bounds";
    for (size_t i = 0; why == NULL && i < n; i++)
        if (!is_name(labels[i].name, 0) || strcmp(labels[i].name, "le") == 0 ||
            strcmp(labels[i].name, "connection") == 0 || strcmp(labels[i].name, "inbound_endpoint") == 0)
            why = "a label name is not a name, or is the host's (le, connection, inbound_endpoint)";
    if (why == NULL)
        return 1;
    size_t k = 0;
    while (k < 16 && warned[k] != NULL && warned[k] != def)
        k++;
    if (k < 16 && warned[k] == NULL) {
        warned[k] = def;
        cmi_log_warn("connectors", "%s %s reported metric '%s', left out: %s", r->noun, r->owner,
                     def && def->name ? def->name : "(null)", why);
    }
    return 0;
}

static void add_sample(cmi_report_t *r, const cmi_metric_def_t *def, const char *text)
{
    sample_t *s = cmi_arena_calloc(r->arena, 1, sizeof(*s));
    s->def = def;
    s->text = text;
    *r->last = s;
    r->last = &s->next;
    r->nsamples++;
}

void cmi_host_report_value(cmi_report_t *r, const cmi_metric_def_t *def, const cmi_nv_t *labels, size_t n, double v)
{
    if (r == NULL || !valid(r, def, labels, n) || def->type == CMI_METRIC_HISTOGRAM)
        return;
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, r->arena, 128);
    series(&b, r, def->name, "", labels, n, NULL);
    cmi_metrics_value(&b, v);
    add_sample(r, def, b.data);
}

void cmi_host_report_histogram(cmi_report_t *r, const cmi_metric_def_t *def, const cmi_nv_t *labels, size_t n,
                             const uint64_t *counts, double sum)
{
    if (r == NULL || !valid(r, def, labels, n) || def->type != CMI_METRIC_HISTOGRAM || counts == NULL)
        return;
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, r->arena, 512);
    uint64_t cum = 0;
    for (size_t i = 0; i <= def->nbuckets; i++) {
        cum += counts[i];
        cmi_strbuf_t le;
        cmi_strbuf_init(&le, r->arena, 48);
        cmi_strbuf_puts(&le, "le=\"");
        if (i < def->nbuckets)
            cmi_metrics_number(&le, def->buckets[i]);
        else
            cmi_strbuf_puts(&le, "+Inf");
        cmi_strbuf_putc(&le, '"');
        series(&b, r, def->name, "_bucket", labels, n, le.data);
        cmi_strbuf_printf(&b, " %llu\n", (unsigned long long)cum);
    }
    series(&b, r, def->name, "_count", labels, n, NULL);
    cmi_strbuf_printf(&b, " %llu\n", (unsigned long long)cum);
    series(&b, r, def->name, "_sum", labels, n, NULL);
    cmi_metrics_value(&b, sum);
    add_sample(r, def, b.data);
}

/* Families in the order first reported, each with all its samples: a
 * pass over the samples per family (connectors declare a few, statically). */
static void write_families(const cmi_report_t *r, cmi_strbuf_t *out)
{
    static const char *const type[] = {"counter", "gauge", "histogram"};
    const sample_t **heads = cmi_arena_calloc(r->arena, r->nsamples ? r->nsamples : 1, sizeof(*heads));
    size_t nfam = 0;
    for (const sample_t *s = r->first; s != NULL; s = s->next) {
        size_t f = 0;
        while (f < nfam && strcmp(heads[f]->def->name, s->def->name) != 0)
            f++;
        if (f == nfam)
            heads[nfam++] = s;
    }
    for (size_t f = 0; f < nfam; f++) {
        const cmi_metric_def_t *def = heads[f]->def;
        cmi_metrics_family(out, def->name, type[def->type], def->help);
        for (const sample_t *p = heads[f]; p != NULL; p = p->next)
            if (strcmp(p->def->name, def->name) == 0)
                cmi_strbuf_puts(out, p->text);
    }
}

void cmi_connectors_report(cmi_engine_t *e, unsigned readiness, cmi_strbuf_t *metrics, cmi_strbuf_t *reasons,
                           size_t *nreasons)
{
    if (e->config == NULL)
        return; /* the end: the deployment has gone */
    cmi_connector_state_t *st = e->config->connectors;
    cmi_report_t r = {.arena = reasons->arena, .reasons = reasons, .nreasons = *nreasons};
    r.last = &r.first;
    for (size_t k = 0; k < st->ninstances; k++) {
        cmi_instance_impl_t *i = st->instances[k];
        const cmi_config_def_t *def = i->mod->desc->config;
        if (!i->started || def == NULL || def->report == NULL)
            continue;
        r.label = "connection";
        r.noun = "connection";
        r.owner = i->pub.name;
        r.counts = (readiness & CMI_READY_CONNECTIONS) != 0;
        def->report(&i->pub, &r);
    }
    for (size_t k = 0; k < st->nlisteners; k++) {
        cmi_listener_impl_t *l = st->listeners[k];
        r.label = "inbound_endpoint";
        r.noun = "inbound endpoint";
        r.owner = l->pub.name;
        r.counts = (readiness & CMI_READY_INBOUND) != 0;
        if (!l->started || !atomic_load(&l->accepting)) {
            cmi_host_report_not_ready(&r, "%s", l->started ? "stopped" : "not started");
            continue;
        }
        if (l->def->report != NULL)
            l->def->report(&l->pub, &r);
    }
    *nreasons = r.nreasons;
    if (metrics != NULL)
        write_families(&r, metrics);
}
