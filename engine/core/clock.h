/* The monotonic clock, for durations and deadlines (never the wall clock). */
#ifndef CMI_CORE_CLOCK_H
#define CMI_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t cmi_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t cmi_monotonic_ms(void)
{
    return cmi_monotonic_ns() / 1000000u;
}

#endif
