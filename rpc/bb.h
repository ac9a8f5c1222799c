/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC byte buffers as rpc/'s modules read them. It includes gRPC C core, so only the .c files
 * of rpc/ include it (rpc.h is for callers that need no gRPC header). Not for building
 * messages.
 */
#ifndef LOUPE_RPC_BB_H
#define LOUPE_RPC_BB_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>

/*
 * The whole of @bb in one malloc'd block of *@ret_len bytes and a NUL after them (for text);
 * NULL for a bad buffer or out of memory.
 */
uint8_t *loupe_rpc_bb_read(grpc_byte_buffer *bb, size_t *ret_len);

#endif
