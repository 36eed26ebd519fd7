/*
 * target/vhost/vhost_proto.h - vhost-user, split virtqueue and virtio-blk wire
 * format, as seen by the target. The definitions are shared with libvblk
 * (lib/vblk/vhost_user_proto.h: packed structs, little endian, size asserts);
 * this header adds the target's limits and the name table for logging.
 */
#ifndef IOC_TARGET_VHOST_VHOST_PROTO_H
#define IOC_TARGET_VHOST_VHOST_PROTO_H

#include "ioc/common.h"

#include "lib/vblk/vhost_user_proto.h"

#define VHOST_MAX_QUEUES     16u  /* num_queues of an export */
#define VHOST_MAX_QUEUE_SIZE 1024u
#define VHOST_MAX_SEGS       128u /* descriptors per chain, header and status included */
#define VHOST_SEG_MAX        (VHOST_MAX_SEGS - 2)
#define VHOST_MAX_IO_BYTES   (8u << 20)

/* Name of a vhost-user request, for logs ("?" when unknown). */
const char *vhost_request_name(uint32_t req);

#endif
