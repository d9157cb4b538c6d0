/* Test helper: writes a small deployment into a temporary folder and loads
 * it with the real loader. */
#ifndef CMI_TEST_DEPLOY_H
#define CMI_TEST_DEPLOY_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

typedef struct {
    char dir[64];
} test_deploy_t;

static inline void deploy_init(test_deploy_t *d)
{
    snprintf(d->dir, sizeof(d->dir), "/tmp/cmi-unit-XXXXXX");
    if (mkdtemp(d->dir) == NULL) {
        perror("mkdtemp");
        abort();
    }
}

/* path like "api/a.xml"; folders are created as needed. */
static inline void deploy_file(test_deploy_t *d, const char *path, const char *content)
{
    char full[256], folder[256];
    snprintf(full, sizeof(full), "%s/%s", d->dir, path);
    snprintf(folder, sizeof(folder), "%s", full);
    *strrchr(folder, '/') = '\0';
    mkdir(folder, 0700);
    FILE *f = fopen(full, "w");
    if (f == NULL) {
        perror(full);
        abort();
    }
    fputs(content, f);
    fclose(f);
}

static inline cmi_config_t *deploy_load(test_deploy_t *d, cmi_diag_t *diag)
{
    cmi_diag_init(diag, stderr);
    return cmi_config_load(d->dir, diag);
}

static inline void deploy_remove(test_deploy_t *d)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", d->dir);
}

#endif
