/* Needs 8 bytes of static TLS, as an initial-exec libmagslab.so would: once
 * tests/dlopen_tls/main.c has used the surplus up, dlopen() of this fails with
 * "cannot allocate memory in static TLS block". */
__attribute__((tls_model("initial-exec"))) __thread void* probe_ie_slot;

void* probe_ie_get(void) { return probe_ie_slot; }
