/* A simulated NVIDIA driver library for tests: exports the NVML symbols nn_tracker uses,
 * plus fake_* control functions that script GPUs. Compiled at test time with
 *   cc -shared -fPIC -Wl,-soname,libnvidia-ml.so.1 -o libnvidia-ml.so.1 fake_nvml.c
 * and loaded by the real pynvml bindings. State is per loaded copy of the library.
 *
 * It is as strict as a real driver was seen to be (an NVIDIA H200, driver 580.159.04):
 * - the total-energy counter moves in steps, once per period (default 100 ms), flat in between;
 * - nvmlDeviceGetPowerUsage is a 1-second average, field 186 is the instant power;
 * - every call has a latency, per function (defaults: counter and field 83 2.4 ms, power 2 us,
 *   field 186 5 us), slept or spun (fake_set_spin);
 * - nvmlInit/nvmlShutdown are reference-counted;
 * - a device can replay a recorded trace (t_mono,counter_mj,instant_mw,usage_mw).
 * Simulated time moves with fake_advance(seconds), or with the real monotonic clock when
 * FAKE_NVML_REALTIME=1 (or fake_set_realtime(1)).
 *
 * For subprocesses (LD_LIBRARY_PATH), FAKE_NVML_DEVICES="name|uuid|watts;name|uuid|watts" plugs in GPUs
 * at the first initialisation. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DEV 16
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION 83
#define NVML_FI_DEV_POWER_INSTANT 186
#define HISTORY 512

/* functions with a configurable latency */
enum { FN_COUNTER, FN_POWER_USAGE, FN_FIELD_INSTANT, FN_FIELD_ENERGY, FN_OTHER, FN_COUNT };

typedef struct {
    long long t_ns;
    double energy_mj;
} sample_t;

typedef struct {
    char name[96];
    char uuid[96];
    char mig_uuid[96];
    unsigned int power_mw;
    unsigned int limit_mw;
    double energy_mj;                /* the true energy, continuous */
    unsigned long long counter_mj;   /* what the counter shows: the energy at its last step */
    long long step_ns;               /* counter update period; 0 = continuous */
    long long next_step_ns;
    sample_t history[HISTORY];       /* (time, energy) for the 1-second average */
    int history_len, history_next;
    int usage_is_average;
    int energy_supported;
    int instant_supported;
    int usage_supported;
    int lost;
    int error_code; /* returned by every power/energy call while non-zero */
    int handle_error; /* returned by nvmlDeviceGetHandleByIndex */
    unsigned int arch;
    int cc_major, cc_minor;
    long long calls;
    long long counter_calls;
    /* replay */
    int trace_len;
    double *trace_t;
    unsigned long long *trace_counter;
    unsigned int *trace_instant, *trace_usage;
} fake_device;

typedef struct { int is_mig; int index; } handle_t;

static fake_device devices[MAX_DEV];
static handle_t handles[MAX_DEV];
static handle_t mig_handles[MAX_DEV];
static int device_count = 0;
static int init_count = 0;
static int init_error = 0;
static long long now_ns = 0;
static int realtime = -1;
static long long real_origin_ns = 0;
static int spin = 0;
static long long latency_ns[FN_COUNT] = {2400000, 2000, 5000, 2500000, 0};

typedef union { double dVal; unsigned int uiVal; unsigned long ulVal; unsigned long long ullVal;
                long long sllVal; int siVal; unsigned short usVal; } nvml_value_t;
typedef struct { unsigned int fieldId; unsigned int scopeId; long long timestamp; long long latencyUsec;
                 unsigned int valueType; unsigned int nvmlReturn; nvml_value_t value; } nvml_field_value_t;

static long long monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void wait_ns(long long ns) {
    if (ns <= 0) return;
    if (spin || ns < 100000) { /* short waits spin: a sleep would overshoot by the timer slack */
        long long end = monotonic_ns() + ns;
        while (monotonic_ns() < end) {}
        return;
    }
    struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
    nanosleep(&ts, NULL);
}

static void remember(fake_device *d) {
    int last = (d->history_next - 1 + HISTORY) % HISTORY;
    if (d->history_len && now_ns - d->history[last].t_ns < 10000000LL) return; /* one point per 10 ms */
    d->history[d->history_next].t_ns = now_ns;
    d->history[d->history_next].energy_mj = d->energy_mj;
    d->history_next = (d->history_next + 1) % HISTORY;
    if (d->history_len < HISTORY) d->history_len++;
}

/* Move one device from now_ns to target_ns at its set power, stepping the visible counter. */
static void advance_device(fake_device *d, long long target_ns) {
    long long t = now_ns;
    while (d->step_ns > 0 && d->next_step_ns <= target_ns) {
        d->energy_mj += d->power_mw * (double)(d->next_step_ns - t) / 1e9;
        t = d->next_step_ns;
        d->counter_mj = (unsigned long long)d->energy_mj;
        d->next_step_ns += d->step_ns;
    }
    d->energy_mj += d->power_mw * (double)(target_ns - t) / 1e9;
    if (d->step_ns == 0) d->counter_mj = (unsigned long long)d->energy_mj;
}

static void advance_ns(long long ns) {
    if (ns <= 0) return;
    long long target = now_ns + ns;
    for (int i = 0; i < device_count; i++) {
        if (devices[i].lost || devices[i].trace_len) continue;
        advance_device(&devices[i], target);
    }
    now_ns = target;
    for (int i = 0; i < device_count; i++) remember(&devices[i]);
}

static void sync_clock(void) {
    if (realtime < 0) {
        const char *env = getenv("FAKE_NVML_REALTIME");
        realtime = env != NULL && env[0] == '1';
        real_origin_ns = monotonic_ns();
    }
    if (realtime) {
        long long real = monotonic_ns() - real_origin_ns;
        advance_ns(real - now_ns);
    }
}

/* Row of a replayed trace at the current time: the last one recorded at or before it. */
static int trace_row(fake_device *d) {
    double t = d->trace_t[0] + now_ns / 1e9;
    int lo = 0, hi = d->trace_len - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->trace_t[mid] <= t) lo = mid; else hi = mid - 1;
    }
    return lo;
}

/* ---- control functions ---- */
void fake_reset(void) {
    for (int i = 0; i < device_count; i++) {
        free(devices[i].trace_t); free(devices[i].trace_counter);
        free(devices[i].trace_instant); free(devices[i].trace_usage);
    }
    memset(devices, 0, sizeof devices); device_count = 0; init_count = 0; init_error = 0; now_ns = 0;
}
void fake_set_init_error(int code) { init_error = code; }
void fake_add_device(const char *name, const char *uuid, unsigned int power_mw, unsigned int limit_mw,
                     unsigned long long energy_mj) {
    if (device_count >= MAX_DEV) return;
    fake_device *d = &devices[device_count];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->uuid, sizeof d->uuid, "%s", uuid);
    d->power_mw = power_mw; d->limit_mw = limit_mw;
    d->energy_mj = (double)energy_mj; d->counter_mj = energy_mj;
    d->step_ns = 100000000LL; d->next_step_ns = (now_ns / d->step_ns + 1) * d->step_ns;
    d->usage_is_average = 1;
    d->energy_supported = 1; d->instant_supported = 1; d->usage_supported = 1;
    d->arch = 7; d->cc_major = 8; d->cc_minor = 0; /* Ampere unless told otherwise */
    remember(d);
    handles[device_count].is_mig = 0; handles[device_count].index = device_count;
    mig_handles[device_count].is_mig = 1; mig_handles[device_count].index = device_count;
    device_count++;
}
void fake_set_mig_uuid(int i, const char *uuid) { snprintf(devices[i].mig_uuid, sizeof devices[i].mig_uuid, "%s", uuid); }
void fake_set_power(int i, unsigned int power_mw) { devices[i].power_mw = power_mw; }
void fake_set_energy(int i, unsigned long long energy_mj) { devices[i].energy_mj = (double)energy_mj; devices[i].counter_mj = energy_mj; }
/* Counter update period in seconds (0: continuous) and the time of its first step. */
void fake_set_step(int i, double period_s, double first_step_s) {
    devices[i].step_ns = (long long)(period_s * 1e9 + 0.5);
    devices[i].next_step_ns = (long long)(first_step_s * 1e9 + 0.5);
    if (devices[i].step_ns == 0) devices[i].counter_mj = (unsigned long long)devices[i].energy_mj;
}
void fake_set_usage_is_average(int i, int yes) { devices[i].usage_is_average = yes; }
void fake_set_energy_supported(int i, int yes) { devices[i].energy_supported = yes; }
void fake_set_instant_supported(int i, int yes) { devices[i].instant_supported = yes; }
void fake_set_usage_supported(int i, int yes) { devices[i].usage_supported = yes; }
void fake_set_lost(int i, int lost) { devices[i].lost = lost; }
void fake_set_error(int i, int code) { devices[i].error_code = code; }
void fake_set_handle_error(int i, int code) { devices[i].handle_error = code; }
void fake_set_arch(int i, unsigned int arch, int major, int minor) {
    devices[i].arch = arch; devices[i].cc_major = major; devices[i].cc_minor = minor;
}
/* Latency in microseconds of: 0 counter, 1 power usage, 2 field 186, 3 field 83, 4 every other call. */
void fake_set_latency_us(int function, double us) { if (function >= 0 && function < FN_COUNT) latency_ns[function] = (long long)(us * 1000); }
void fake_set_spin(int yes) { spin = yes; }
void fake_set_realtime(int yes) { sync_clock(); realtime = yes; real_origin_ns = monotonic_ns() - now_ns; }
long long fake_calls(int i) { return devices[i].calls; }
long long fake_counter_calls(int i) { return devices[i].counter_calls; }
int fake_init_count(void) { return init_count; }
double fake_now(void) { return now_ns / 1e9; }
/* The true energy (mJ) a device has used: what the counter would show without steps. */
double fake_true_energy(int i) { return devices[i].energy_mj; }
/* Advance simulated time: every device's energy moves at its set power (the driver's counter in time). */
void fake_advance(double seconds) { advance_ns((long long)(seconds * 1e9 + 0.5)); }

/* Replay a trace (CSV: t_mono,counter_mj,instant_mw,usage_mw) on device i from the current time; returns its
 * duration in seconds, or -1 if it cannot be read. */
double fake_load_trace(int i, const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    char line[256];
    int capacity = 1024, n = 0;
    fake_device *d = &devices[i];
    d->trace_t = malloc(capacity * sizeof(double));
    d->trace_counter = malloc(capacity * sizeof(unsigned long long));
    d->trace_instant = malloc(capacity * sizeof(unsigned int));
    d->trace_usage = malloc(capacity * sizeof(unsigned int));
    while (fgets(line, sizeof line, f)) {
        double t; unsigned long long counter; unsigned int instant, usage;
        if (sscanf(line, "%lf,%llu,%u,%u", &t, &counter, &instant, &usage) != 4) continue; /* the header */
        if (n == capacity) {
            capacity *= 2;
            d->trace_t = realloc(d->trace_t, capacity * sizeof(double));
            d->trace_counter = realloc(d->trace_counter, capacity * sizeof(unsigned long long));
            d->trace_instant = realloc(d->trace_instant, capacity * sizeof(unsigned int));
            d->trace_usage = realloc(d->trace_usage, capacity * sizeof(unsigned int));
        }
        d->trace_t[n] = t; d->trace_counter[n] = counter; d->trace_instant[n] = instant; d->trace_usage[n] = usage;
        n++;
    }
    fclose(f);
    if (n == 0) return -1;
    double origin = now_ns / 1e9;
    for (int k = 0; k < n; k++) d->trace_t[k] -= origin; /* row 0 plays at the current simulated time */
    d->trace_len = n;
    return d->trace_t[n - 1] - d->trace_t[0];
}

/* ---- NVML API ---- */
static int check_device(void *handle, fake_device **out, int function) {
    sync_clock();
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (handle == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    fake_device *d = &devices[((handle_t *)handle)->index];
    d->calls++;
    wait_ns(latency_ns[function]);
    if (d->lost) return NVML_ERROR_GPU_IS_LOST;
    if (d->error_code) return d->error_code;
    *out = d;
    return NVML_SUCCESS;
}

static unsigned long long counter_of(fake_device *d) {
    return d->trace_len ? d->trace_counter[trace_row(d)] : d->counter_mj;
}
static unsigned int instant_of(fake_device *d) {
    return d->trace_len ? d->trace_instant[trace_row(d)] : d->power_mw;
}
static unsigned int average_of(fake_device *d) {
    if (d->trace_len) return d->trace_usage[trace_row(d)];
    if (!d->usage_is_average) return d->power_mw;
    /* mean power over the last second: the energy since the oldest remembered point within 1 s */
    long long from = now_ns - 1000000000LL;
    sample_t oldest = d->history[(d->history_next - 1 + HISTORY) % HISTORY];
    for (int k = 1; k <= d->history_len; k++) {
        sample_t s = d->history[(d->history_next - k + HISTORY) % HISTORY];
        if (s.t_ns < from) break;
        oldest = s;
    }
    if (oldest.t_ns >= now_ns) return d->power_mw;
    return (unsigned int)((d->energy_mj - oldest.energy_mj) / ((now_ns - oldest.t_ns) / 1e9));
}

static void devices_from_environment(void) {
    static int done = 0;
    const char *spec = getenv("FAKE_NVML_DEVICES");
    if (done || spec == NULL) return;
    done = 1;
    char buffer[1024];
    snprintf(buffer, sizeof buffer, "%s", spec);
    for (char *save = NULL, *entry = strtok_r(buffer, ";", &save); entry; entry = strtok_r(NULL, ";", &save)) {
        char *inner = NULL;
        char *name = strtok_r(entry, "|", &inner);
        char *uuid = strtok_r(NULL, "|", &inner);
        char *watts = strtok_r(NULL, "|", &inner);
        if (name && uuid && watts) fake_add_device(name, uuid, (unsigned int)(atof(watts) * 1000), 400000, 0);
    }
}

int nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    sync_clock();
    if (init_error) return init_error;
    devices_from_environment();
    init_count++; /* reference-counted, as the real driver */
    return 0;
}
int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlShutdown(void) { if (!init_count) return NVML_ERROR_UNINITIALIZED; init_count--; return 0; }
const char *nvmlErrorString(int code) {
    switch (code) {
    case 0: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case 9: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}
int nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (length < 8) return NVML_ERROR_INSUFFICIENT_SIZE;
    snprintf(version, length, "%s", "550.54.15");
    return 0;
}
int nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    *count = (unsigned int)device_count;
    return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **handle) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (index >= (unsigned int)device_count) return NVML_ERROR_INVALID_ARGUMENT;
    if (devices[index].handle_error) return devices[index].handle_error;
    *handle = &handles[index];
    return 0;
}
int nvmlDeviceGetHandleByUUID(const char *uuid, void **handle) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    for (int i = 0; i < device_count; i++) {
        if (strcmp(devices[i].uuid, uuid) == 0) { *handle = &handles[i]; return 0; }
        if (devices[i].mig_uuid[0] && strcmp(devices[i].mig_uuid, uuid) == 0) { *handle = &mig_handles[i]; return 0; }
    }
    return NVML_ERROR_NOT_FOUND;
}
int nvmlDeviceIsMigDeviceHandle(void *handle, unsigned int *is_mig) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    *is_mig = (unsigned int)((handle_t *)handle)->is_mig;
    return 0;
}
int nvmlDeviceGetDeviceHandleFromMigDeviceHandle(void *mig, void **parent) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!((handle_t *)mig)->is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *parent = &handles[((handle_t *)mig)->index];
    return 0;
}
int nvmlDeviceGetName(void *handle, char *name, unsigned int length) {
    fake_device *d; int r = check_device(handle, &d, FN_OTHER); if (r) return r;
    snprintf(name, length, "%s", d->name);
    return 0;
}
int nvmlDeviceGetUUID(void *handle, char *uuid, unsigned int length) {
    fake_device *d; int r = check_device(handle, &d, FN_OTHER); if (r) return r;
    snprintf(uuid, length, "%s", d->uuid);
    return 0;
}
int nvmlDeviceGetArchitecture(void *handle, unsigned int *arch) {
    fake_device *d; int r = check_device(handle, &d, FN_OTHER); if (r) return r;
    *arch = d->arch;
    return 0;
}
int nvmlDeviceGetCudaComputeCapability(void *handle, int *major, int *minor) {
    fake_device *d; int r = check_device(handle, &d, FN_OTHER); if (r) return r;
    *major = d->cc_major; *minor = d->cc_minor;
    return 0;
}
int nvmlDeviceGetPowerUsage(void *handle, unsigned int *power_mw) {
    fake_device *d; int r = check_device(handle, &d, FN_POWER_USAGE); if (r) return r;
    if (!d->usage_supported) return NVML_ERROR_NOT_SUPPORTED;
    *power_mw = average_of(d);
    return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(void *handle, unsigned long long *energy_mj) {
    fake_device *d; int r = check_device(handle, &d, FN_COUNTER); if (r) return r;
    d->counter_calls++;
    if (!d->energy_supported) return NVML_ERROR_NOT_SUPPORTED;
    *energy_mj = counter_of(d);
    return 0;
}
int nvmlDeviceGetPowerManagementLimit(void *handle, unsigned int *limit_mw) {
    fake_device *d; int r = check_device(handle, &d, FN_OTHER); if (r) return r;
    if (!d->limit_mw) return NVML_ERROR_NOT_SUPPORTED;
    *limit_mw = d->limit_mw;
    return 0;
}
int nvmlDeviceGetFieldValues(void *handle, int count, nvml_field_value_t *values) {
    int energy_asked = 0;
    for (int i = 0; i < count; i++) energy_asked |= values[i].fieldId == NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION;
    fake_device *d; int r = check_device(handle, &d, energy_asked ? FN_FIELD_ENERGY : FN_FIELD_INSTANT); if (r) return r;
    for (int i = 0; i < count; i++) {
        values[i].timestamp = now_ns / 1000;
        if (values[i].fieldId == NVML_FI_DEV_POWER_INSTANT && d->instant_supported) {
            values[i].nvmlReturn = 0;
            values[i].valueType = 1; /* unsigned int */
            values[i].value.uiVal = instant_of(d);
        } else if (values[i].fieldId == NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION && d->energy_supported) {
            values[i].nvmlReturn = 0;
            values[i].valueType = 3; /* unsigned long long */
            values[i].value.ullVal = counter_of(d);
        } else {
            values[i].nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return 0;
}
