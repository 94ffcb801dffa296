/* A TLS-heavy library for tests/dlopen_tls/main.c. Built two ways:
 *  - TLS_HEAVY_STATIC_BYTES=n: an initial-exec __thread array of n bytes,
 *    which glibc can only place in the static TLS surplus (the whole module
 *    is then static TLS); loading several uses the surplus up;
 *  - otherwise a 1 MiB __thread array in dynamic TLS (global-dynamic). */
#ifdef TLS_HEAVY_STATIC_BYTES
__attribute__((tls_model("initial-exec"))) __thread char tls_heavy[TLS_HEAVY_STATIC_BYTES];
#else
__thread char tls_heavy[1 << 20];
#endif

char* tls_heavy_touch(void) {
  tls_heavy[0] = 1;
  return tls_heavy;
}
