/* A simulated NVIDIA driver library for tests: exports the NVML symbols nn_tracker uses,
 * plus fake_* control functions that script GPUs. Compiled at test time with
 *   cc -shared -fPIC -Wl,-soname,libnvidia-ml.so.1 -o libnvidia-ml.so.1 fake_nvml.c
 * and loaded by the real pynvml bindings. State is per loaded copy of the library.
 * For subprocesses (LD_LIBRARY_PATH), FAKE_NVML_DEVICES="name|uuid|watts;name|uuid|watts" plugs in GPUs
 * at the first initialisation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEV 16
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_FI_DEV_POWER_INSTANT 186

typedef struct {
    char name[96];
    char uuid[96];
    char mig_uuid[96];
    unsigned int power_mw;
    unsigned int limit_mw;
    unsigned long long energy_mj;
    double energy_remainder_mj;
    int energy_supported;
    int instant_supported;
    int lost;
    int error_code; /* returned by every power/energy call while non-zero */
    long long calls;
} fake_device;

typedef struct { int is_mig; int index; } handle_t;

static fake_device devices[MAX_DEV];
static handle_t handles[MAX_DEV];
static handle_t mig_handles[MAX_DEV];
static int device_count = 0;
static int initialised = 0;
static int init_error = 0;

typedef union { double dVal; unsigned int uiVal; unsigned long ulVal; unsigned long long ullVal;
                long long sllVal; int siVal; unsigned short usVal; } nvml_value_t;
typedef struct { unsigned int fieldId; unsigned int scopeId; long long timestamp; long long latencyUsec;
                 unsigned int valueType; unsigned int nvmlReturn; nvml_value_t value; } nvml_field_value_t;

/* ---- control functions ---- */
void fake_reset(void) { memset(devices, 0, sizeof devices); device_count = 0; initialised = 0; init_error = 0; }
void fake_set_init_error(int code) { init_error = code; }
void fake_add_device(const char *name, const char *uuid, unsigned int power_mw, unsigned int limit_mw,
                     unsigned long long energy_mj) {
    if (device_count >= MAX_DEV) return;
    fake_device *d = &devices[device_count];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->uuid, sizeof d->uuid, "%s", uuid);
    d->power_mw = power_mw; d->limit_mw = limit_mw; d->energy_mj = energy_mj;
    d->energy_supported = 1; d->instant_supported = 1;
    handles[device_count].is_mig = 0; handles[device_count].index = device_count;
    mig_handles[device_count].is_mig = 1; mig_handles[device_count].index = device_count;
    device_count++;
}
void fake_set_mig_uuid(int i, const char *uuid) { snprintf(devices[i].mig_uuid, sizeof devices[i].mig_uuid, "%s", uuid); }
void fake_set_power(int i, unsigned int power_mw) { devices[i].power_mw = power_mw; }
void fake_set_energy(int i, unsigned long long energy_mj) { devices[i].energy_mj = energy_mj; }
void fake_set_energy_supported(int i, int yes) { devices[i].energy_supported = yes; }
void fake_set_instant_supported(int i, int yes) { devices[i].instant_supported = yes; }
void fake_set_lost(int i, int lost) { devices[i].lost = lost; }
void fake_set_error(int i, int code) { devices[i].error_code = code; }
long long fake_calls(int i) { return devices[i].calls; }
/* Advance every device's energy counter by power x seconds (the driver's counter moving in time). */
void fake_advance(double seconds) {
    for (int i = 0; i < device_count; i++) {
        if (devices[i].lost) continue;
        double mj = devices[i].power_mw * seconds + devices[i].energy_remainder_mj; /* mW x s = mJ */
        unsigned long long whole = (unsigned long long)mj;
        devices[i].energy_remainder_mj = mj - (double)whole;
        devices[i].energy_mj += whole;
    }
}

/* ---- NVML API ---- */
static int check_device(void *handle, fake_device **out) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (handle == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    fake_device *d = &devices[((handle_t *)handle)->index];
    d->calls++;
    if (d->lost) return NVML_ERROR_GPU_IS_LOST;
    if (d->error_code) return d->error_code;
    *out = d;
    return NVML_SUCCESS;
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
    if (init_error) return init_error;
    devices_from_environment();
    initialised = 1;
    return 0;
}
int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlShutdown(void) { if (!initialised) return NVML_ERROR_UNINITIALIZED; initialised = 0; return 0; }
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
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (length < 8) return NVML_ERROR_INSUFFICIENT_SIZE;
    snprintf(version, length, "%s", "550.54.15");
    return 0;
}
int nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    *count = (unsigned int)device_count;
    return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **handle) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (index >= (unsigned int)device_count) return NVML_ERROR_INVALID_ARGUMENT;
    *handle = &handles[index];
    return 0;
}
int nvmlDeviceGetHandleByUUID(const char *uuid, void **handle) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    for (int i = 0; i < device_count; i++) {
        if (strcmp(devices[i].uuid, uuid) == 0) { *handle = &handles[i]; return 0; }
        if (devices[i].mig_uuid[0] && strcmp(devices[i].mig_uuid, uuid) == 0) { *handle = &mig_handles[i]; return 0; }
    }
    return NVML_ERROR_NOT_FOUND;
}
int nvmlDeviceIsMigDeviceHandle(void *handle, unsigned int *is_mig) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    *is_mig = (unsigned int)((handle_t *)handle)->is_mig;
    return 0;
}
int nvmlDeviceGetDeviceHandleFromMigDeviceHandle(void *mig, void **parent) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (!((handle_t *)mig)->is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *parent = &handles[((handle_t *)mig)->index];
    return 0;
}
int nvmlDeviceGetName(void *handle, char *name, unsigned int length) {
    fake_device *d; int r = check_device(handle, &d); if (r) return r;
    snprintf(name, length, "%s", d->name);
    return 0;
}
int nvmlDeviceGetUUID(void *handle, char *uuid, unsigned int length) {
    fake_device *d; int r = check_device(handle, &d); if (r) return r;
    snprintf(uuid, length, "%s", d->uuid);
    return 0;
}
int nvmlDeviceGetPowerUsage(void *handle, unsigned int *power_mw) {
    fake_device *d; int r = check_device(handle, &d); if (r) return r;
    *power_mw = d->power_mw;
    return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(void *handle, unsigned long long *energy_mj) {
    fake_device *d; int r = check_device(handle, &d); if (r) return r;
    if (!d->energy_supported) return NVML_ERROR_NOT_SUPPORTED;
    *energy_mj = d->energy_mj;
    return 0;
}
int nvmlDeviceGetPowerManagementLimit(void *handle, unsigned int *limit_mw) {
    fake_device *d; int r = check_device(handle, &d); if (r) return r;
    if (!d->limit_mw) return NVML_ERROR_NOT_SUPPORTED;
    *limit_mw = d->limit_mw;
    return 0;
}
int nvmlDeviceGetFieldValues(void *handle, int count, nvml_field_value_t *values) {
    fake_device *d; int r = check_device(handle, &d); if (r) return r;
    for (int i = 0; i < count; i++) {
        if (values[i].fieldId == NVML_FI_DEV_POWER_INSTANT && d->instant_supported) {
            values[i].nvmlReturn = 0;
            values[i].valueType = 1; /* unsigned int */
            values[i].value.uiVal = d->power_mw;
        } else {
            values[i].nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return 0;
}
