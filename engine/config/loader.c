#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <libxml/parser.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/artifacts.h"
#include "config/compile.h"
#include "core/log.h"
#include "http/dispatch.h"
#include "mediators/registry.h"
#include "plugin/plugin.h"

typedef void (*artifact_fn)(cmi_compile_t *cc, xmlNodePtr root);

/* The folders, in load order, with the root element each file must hold
 * (docs/configuration.md, "Deployments").  Folders MI knows that cmi does
 * not serve yet are listed too, so their files are reported instead of
 * silently ignored. */
typedef struct {
    const char *folder;
    const char *root;
    artifact_fn compile;
    const char *unsupported; /* what to call them when not supported */
    int unsupported_is_error;
    int then; /* then the compilation deferred to this phase (cmi_defer_phase_t + 1; 0: none) */
} folder_t;

static const folder_t folders[] = {
    {"local-entries", "localEntry", cmi_artifact_local_entry, NULL, 0},
    {"templates", "template", cmi_artifact_template, NULL, 0, CMI_DEFER_ENDPOINTS + 1},
    {"endpoints", "endpoint", cmi_artifact_endpoint, NULL, 0, 0},
    {"sequences", "sequence", cmi_artifact_sequence, NULL, 0, CMI_DEFER_SEQUENCES + 1},
    {"api", "api", cmi_artifact_api, NULL, 0},
    {"inbound-endpoints", "inboundEndpoint", cmi_artifact_inbound, NULL, 0},
    {"proxy-services", "proxy", cmi_artifact_proxy, NULL, 0},
    {"tasks", "task", NULL, "scheduled tasks", 1},
    {"message-stores", "messageStore", NULL, "message stores", 1},
    {"message-processors", "messageProcessor", NULL, "message processors", 1},
    {"priority-executors", "priorityExecutor", NULL, "priority executors", 1},
    {"event-sources", "eventSource", NULL, "event sources", 1},
};
#define NFOLDERS (sizeof(folders) / sizeof(folders[0]))

/* ---- XML parse errors --------------------------------------------------- */

typedef struct {
    int have;
    int line;
    char message[512];
} parse_error_t;

static void on_xml_error(void *data, xmlErrorPtr e)
{
    parse_error_t *pe = data;
    if (pe->have || e == NULL)
        return; /* the first error is the one that explains the rest */
    pe->have = 1;
    pe->line = e->line;
    snprintf(pe->message, sizeof(pe->message), "%s", e->message ? e->message : "malformed XML");
    size_t n = strlen(pe->message);
    while (n > 0 && (pe->message[n - 1] == '\n' || pe->message[n - 1] == ' '))
        pe->message[--n] = '\0';
}

/* Reads a whole artifact; the text stays available to the compilers so that
 * an expression error can be pointed at by line and column. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 8192, n = 0;
    char *buf = cmi_xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap)
            buf = cmi_xrealloc(buf, cap *= 2);
    }
    int failed = ferror(f);
    fclose(f);
    if (failed || n > INT32_MAX) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static xmlDocPtr parse_file(cmi_compile_t *cc, const char *path)
{
    size_t len = 0;
    char *text = read_file(path, &len);
    if (text == NULL) {
        cmi_diag_error(cc->diag, cc->file, 0, "cannot read the file: %s", strerror(errno));
        return NULL;
    }
    /* Artifacts copied from MI's documentation often keep the page's
     * indentation before <?xml, which XML allows nowhere but at the start:
     * spaces and tabs there are skipped (not newlines: lines keep their numbers). */
    size_t skip = strspn(text, " \t");
    parse_error_t pe = {0};
    xmlSetStructuredErrorFunc(&pe, on_xml_error);
    /* No network, no entity expansion: artifacts cannot pull in anything. */
    xmlDocPtr doc = xmlReadMemory(text + skip, (int)(len - skip), path, NULL,
                                  XML_PARSE_NONET | XML_PARSE_BIG_LINES | XML_PARSE_NOCDATA);
    xmlSetStructuredErrorFunc(NULL, NULL);
    if (doc == NULL || pe.have) {
        cmi_diag_error(cc->diag, cc->file, pe.line, "malformed XML: %s", pe.have ? pe.message : "cannot read file");
        xmlFreeDoc(doc);
        free(text);
        return NULL;
    }
    cc->source = text;
    cc->source_len = len;
    return doc;
}

/* ---- folders ------------------------------------------------------------ */

static int is_xml_name(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".xml") == 0 && name[0] != '.';
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The *.xml files of a folder, sorted, in the config arena; -1 when the
 * folder does not exist. */
static int list_xml(cmi_arena_t *arena, const char *dir, char ***out, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    size_t cap = 16, n = 0;
    char **names = cmi_xmalloc(cap * sizeof(*names));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_xml_name(e->d_name))
            continue;
        if (n == cap)
            names = cmi_xrealloc(names, (cap *= 2) * sizeof(*names));
        names[n++] = cmi_arena_strdup(arena, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_names);
    *out = cmi_arena_memdup(arena, names, n * sizeof(*names));
    *count = n;
    free(names);
    return 0;
}

static const char *join(cmi_arena_t *arena, const char *dir, const char *a, const char *b)
{
    /* Paths are printed relative to the deployment as the user named it. */
    if (strcmp(dir, ".") == 0)
        return b ? cmi_arena_sprintf(arena, "%s/%s", a, b) : cmi_arena_strdup(arena, a);
    return b ? cmi_arena_sprintf(arena, "%s/%s/%s", dir, a, b) : cmi_arena_sprintf(arena, "%s/%s", dir, a);
}

static void load_file(cmi_compile_t *cc, const folder_t *f, const char *path)
{
    xmlDocPtr doc = parse_file(cc, path);
    if (doc == NULL)
        return;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (root == NULL || !cmi_xml_is(root, f->root)) {
        cmi_diag_error(cc->diag, cc->file, root ? cmi_xml_line(root) : 0, "expected <%s> in %s/, found <%s>",
                       f->root, f->folder, root ? (const char *)root->name : "nothing");
    } else if (f->compile != NULL) {
        f->compile(cc, root);
    } else {
        cmi_artifact_unsupported(cc, root, f->unsupported, f->unsupported_is_error);
    }
    xmlFreeDoc(doc);
    free((char *)cc->source);
    cc->source = NULL;
    cc->source_len = 0;
}

static void load_folder(cmi_compile_t *cc, const char *dir, const folder_t *f)
{
    char **names;
    size_t n;
    const char *fdir = join(cc->arena, dir, f->folder, NULL);
    if (list_xml(cc->arena, fdir, &names, &n) != 0)
        return; /* an absent folder is an empty one */
    for (size_t i = 0; i < n; i++) {
        cc->file = join(cc->arena, dir, f->folder, names[i]);
        load_file(cc, f, cc->file);
    }
}

static int known_folder(const char *name)
{
    for (size_t i = 0; i < NFOLDERS; i++)
        if (strcmp(folders[i].folder, name) == 0)
            return 1;
    return 0;
}

static void warn_unknown_folders(cmi_compile_t *cc, const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || known_folder(e->d_name))
            continue;
        const char *path = join(cc->arena, dir, e->d_name, NULL);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            cmi_diag_warn(cc->diag, path, 0, "not an artifact folder cmi knows; ignored");
    }
    closedir(d);
}

/* MI ships a `fault` sequence (log the error, then drop).  An artifact that
 * names `fault` without deploying one gets MI's, as in MI
 * (docs/mi-compatibility.md, "The default fault sequence"); it does not
 * become the deployment's fault sequence, so without such a reference
 * cmi's error answers stay as they are.  The text is MI's own. */
static const char mi_default_fault[] =
    "<sequence name=\"fault\" xmlns=\"http://ws.apache.org/ns/synapse\">\n"
    "    <log level=\"full\">\n"
    "        <property name=\"MESSAGE\" value=\"Executing default 'fault' sequence\"/>\n"
    "        <property expression=\"get-property('ERROR_CODE')\" name=\"ERROR_CODE\"/>\n"
    "        <property expression=\"get-property('ERROR_MESSAGE')\" name=\"ERROR_MESSAGE\"/>\n"
    "    </log>\n"
    "    <drop/>\n"
    "</sequence>\n";

static void add_mi_default_fault(cmi_compile_t *cc)
{
    if (cmi_htab_gets(&cc->config->sequences, "fault") != NULL || !cmi_compile_is_referenced(cc, "fault"))
        return;
    xmlDocPtr doc = xmlReadMemory(mi_default_fault, (int)sizeof(mi_default_fault) - 1, "fault.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOCDATA);
    if (doc == NULL)
        abort(); /* the text above is well formed */
    cc->file = "(MI's default fault sequence)";
    cc->source = mi_default_fault;
    cc->source_len = sizeof(mi_default_fault) - 1;
    cmi_artifact_sequence(cc, xmlDocGetRootElement(doc));
    cc->source = NULL;
    cc->source_len = 0;
    xmlFreeDoc(doc);
    cmi_log_write(CMI_LOG_INFO, "config", "no sequence named 'fault' is deployed: MI's default (log, then drop) "
                  "serves the artifacts that name it");
}

static void config_arena_free(void *p)
{
    free(p);
}

cmi_config_t *cmi_config_load(const char *dir, cmi_diag_t *diag)
{
    return cmi_config_load_with(dir, NULL, 0, diag);
}

cmi_config_t *cmi_config_load_with(const char *dir, const cmi_plugins_t *plugins, int check_only, cmi_diag_t *diag)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cmi_diag_error(diag, dir, 0, "cannot open the deployment folder: %s",
                       stat(dir, &st) != 0 ? strerror(errno) : "not a folder");
        return NULL;
    }
    const char *test = getenv("CMI_TEST_MEDIATORS");
    cmi_mediator_enable_test_kinds(test != NULL && strcmp(test, "1") == 0);

    cmi_arena_t *arena = cmi_arena_create(64 * 1024);
    cmi_config_t *cfg = cmi_arena_calloc(arena, 1, sizeof(*cfg));
    cfg->arena = arena;
    atomic_init(&cfg->refs, 1);
    cfg->dir = cmi_arena_strdup(arena, dir);
    cmi_htab_init(&cfg->sequences, arena);
    cmi_htab_init(&cfg->local_entries, arena);
    cmi_htab_init(&cfg->endpoints, arena);
    cmi_htab_init(&cfg->templates, arena);
    cmi_htab_init(&cfg->endpoint_templates, arena);
    cfg->connectors = cmi_connectors_create(arena, plugins, check_only);

    size_t errors_before = diag->errors;
    cmi_compile_t cc = {.config = cfg, .diag = diag, .arena = arena};
    STAILQ_INIT(&cc.refs);
    STAILQ_INIT(&cc.checks);
    STAILQ_INIT(&cc.deferred);
    for (size_t i = 0; i < NFOLDERS; i++) {
        load_folder(&cc, dir, &folders[i]);
        if (folders[i].then != 0)
            cmi_compile_run_deferred(&cc, (cmi_defer_phase_t)(folders[i].then - 1));
    }
    warn_unknown_folders(&cc, dir);
    cfg->fault_seq = cmi_htab_gets(&cfg->sequences, "fault"); /* deployed, never MI's default */
    add_mi_default_fault(&cc);
    cmi_compile_resolve_refs(&cc);
    cfg->main_seq = cmi_htab_gets(&cfg->sequences, "main");
    cfg->mismatch_seq = cmi_htab_gets(&cfg->sequences, "_resource_mismatch_handler_");
    cfg->dispatch = cmi_dispatch_build(cfg, diag);

    if (cfg->apis != NULL)
        cmi_arena_cleanup_add(arena, config_arena_free, cfg->apis);
    if (cfg->inbounds != NULL)
        cmi_arena_cleanup_add(arena, config_arena_free, cfg->inbounds);
    if (cfg->proxies != NULL)
        cmi_arena_cleanup_add(arena, config_arena_free, cfg->proxies);
    if (diag->errors > errors_before) {
        cmi_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

void cmi_config_destroy(cmi_config_t *cfg)
{
    if (cfg != NULL)
        cmi_arena_destroy(cfg->arena);
}

void cmi_config_retain(cmi_config_t *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
}

void cmi_config_release(cmi_config_t *cfg)
{
    if (cfg == NULL || atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (cfg->unused != NULL)
        cfg->unused(cfg);
    else
        cmi_config_destroy(cfg);
}
