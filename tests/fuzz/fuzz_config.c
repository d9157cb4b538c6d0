/* libFuzzer target: the artifact loader.  The input becomes an API file of
 * a deployment (beside a fixed sequence it may reference); loading must
 * report problems as diagnostics, never crash or leak. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

static char dir[64];

static void write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        abort();
    fwrite(data, 1, size, f);
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128];
    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/cmi-fuzz-config-%d", (int)getpid());
        mkdir(dir, 0700);
        snprintf(path, sizeof(path), "%s/api", dir);
        mkdir(path, 0700);
        snprintf(path, sizeof(path), "%s/sequences", dir);
        mkdir(path, 0700);
        const char *seq = "<sequence xmlns=\"http://ws.apache.org/ns/synapse\" name=\"s\"><log/></sequence>";
        snprintf(path, sizeof(path), "%s/sequences/s.xml", dir);
        write_file(path, seq, strlen(seq));
    }
    if (size > 65536)
        return 0;
    snprintf(path, sizeof(path), "%s/api/a.xml", dir);
    write_file(path, data, size);
    cmi_diag_t diag;
    cmi_diag_init(&diag, NULL);
    cmi_config_t *cfg = cmi_config_load(dir, &diag);
    cmi_config_destroy(cfg);
    return 0;
}
