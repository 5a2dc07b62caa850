/* SHA-256 (FIPS 180-4), small and dependency-free: the bundle check needs nothing else from a crypto library, and
 * a deployable folder without libcrypto.so is one library less to ship and keep patched. */
#ifndef LH_SHA256_H
#define LH_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t block[64];
    size_t used; /* bytes waiting in block */
} lh_sha256;

void lh_sha256_init(lh_sha256 *ctx);
void lh_sha256_update(lh_sha256 *ctx, const void *data, size_t size);
/* Writes the digest as 64 lowercase hex digits and a NUL into hex[65]. */
void lh_sha256_final_hex(lh_sha256 *ctx, char hex[65]);

#endif
