#include "config.h"

#include "config/uri.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;
    size_t len;
    size_t max;
} fetched_t;

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
    fetched_t *f = userdata;
    size_t add = size * n;
    if (f->len + add > f->max)
        return 0; /* too large: curl stops with a write error */
    f->data = cmi_xrealloc(f->data, f->len + add + 1);
    memcpy(f->data + f->len, p, add);
    f->len += add;
    f->data[f->len] = '\0';
    return add;
}

/* An http(s) URI, read with a bounded time and size. */
static char *fetch_url(const char *url, size_t max, size_t *len, char *err, size_t errlen)
{
    fetched_t f = {NULL, 0, max};
    CURL *h = curl_easy_init();
    if (h == NULL) {
        snprintf(err, errlen, "cannot start an HTTP client");
        return NULL;
    }
    char cerr[CURL_ERROR_SIZE] = "";
    long status = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK || status != 200) {
        if (rc == CURLE_WRITE_ERROR)
            snprintf(err, errlen, "larger than %zu bytes", max);
        else if (rc != CURLE_OK)
            snprintf(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
        else
            snprintf(err, errlen, "HTTP status %ld", status);
        free(f.data);
        return NULL;
    }
    *len = f.len;
    return f.data ? f.data : cmi_xstrdup("");
}

static char *read_path(cmi_compile_t *cc, const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    if (strncmp(path, "//", 2) == 0)
        path += 2; /* file://PATH */
    const char *full = path[0] == '/' ? path : cmi_arena_sprintf(cc->arena, "%s/%s", cc->config->dir, path);
    FILE *f = fopen(full, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", full, strerror(errno));
        return NULL;
    }
    fetched_t d = {NULL, 0, max};
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        if (on_data(buf, 1, n, &d) != n) {
            snprintf(err, errlen, "%s: larger than %zu bytes", full, max);
            fclose(f);
            free(d.data);
            return NULL;
        }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "%s: cannot read it", full);
        free(d.data);
        return NULL;
    }
    *len = d.len;
    return d.data ? d.data : cmi_xstrdup("");
}

int cmi_uri_readable(const char *uri)
{
    return strncmp(uri, "file:", 5) == 0 || strncmp(uri, "http://", 7) == 0 || strncmp(uri, "https://", 8) == 0;
}

char *cmi_uri_read(cmi_compile_t *cc, const char *uri, size_t max, size_t *len, char *err, size_t errlen)
{
    if (strncmp(uri, "file:", 5) == 0)
        return read_path(cc, uri + 5, max, len, err, errlen);
    if (cmi_uri_readable(uri))
        return fetch_url(uri, max, len, err, errlen);
    snprintf(err, errlen, "cmi reads file:, http: and https: URIs");
    return NULL;
}
