/*
 * lib/vblk/vhost_user_proto.h - wire format of vhost-user, split virtqueues
 * and virtio-blk, shared by libvblk (initiator) and iocd's vhost target.
 *
 * Sources: qemu docs/interop/vhost-user.rst (message framing, payloads) and
 * the virtio 1.1 spec (split rings, virtio-blk config and requests).
 * Byte order: everything is little endian on the wire and in the rings; we
 * only build on little-endian hosts (asserted below), so fields are used as is.
 */
#ifndef IOC_LIB_VBLK_VHOST_USER_PROTO_H
#define IOC_LIB_VBLK_VHOST_USER_PROTO_H

#include <stdbool.h>
#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vhost-user support assumes a little-endian host"
#endif

/* ---- vhost-user messages ---- */

enum vhost_user_request {
    VHOST_USER_GET_FEATURES = 1,
    VHOST_USER_SET_FEATURES = 2,
    VHOST_USER_SET_OWNER = 3,
    VHOST_USER_RESET_OWNER = 4,
    VHOST_USER_SET_MEM_TABLE = 5,
    VHOST_USER_SET_LOG_BASE = 6,
    VHOST_USER_SET_LOG_FD = 7,
    VHOST_USER_SET_VRING_NUM = 8,
    VHOST_USER_SET_VRING_ADDR = 9,
    VHOST_USER_SET_VRING_BASE = 10,
    VHOST_USER_GET_VRING_BASE = 11,
    VHOST_USER_SET_VRING_KICK = 12,
    VHOST_USER_SET_VRING_CALL = 13,
    VHOST_USER_SET_VRING_ERR = 14,
    VHOST_USER_GET_PROTOCOL_FEATURES = 15,
    VHOST_USER_SET_PROTOCOL_FEATURES = 16,
    VHOST_USER_GET_QUEUE_NUM = 17,
    VHOST_USER_SET_VRING_ENABLE = 18,
    VHOST_USER_GET_CONFIG = 24,
    VHOST_USER_SET_CONFIG = 25,
    VHOST_USER_MAX_REQUEST = 41,
};

#define VHOST_USER_VERSION        0x1u
#define VHOST_USER_VERSION_MASK   0x3u
#define VHOST_USER_REPLY_FLAG     (1u << 2)
#define VHOST_USER_NEED_REPLY     (1u << 3)

#define VHOST_USER_PROTOCOL_F_MQ        0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_CONFIG    9

#define VHOST_USER_F_PROTOCOL_FEATURES 30

#define VHOST_USER_MAX_REGIONS   8
#define VHOST_USER_MAX_FDS       8
#define VHOST_USER_VRING_IDX_MASK 0xffu
#define VHOST_USER_VRING_NOFD     (1u << 8)
#define VHOST_USER_CONFIG_HDR     12u
#define VHOST_USER_CONFIG_MAX     256u

struct vhost_user_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;   /* payload bytes following the header */
} __attribute__((packed));
_Static_assert(sizeof(struct vhost_user_hdr) == 12, "vhost-user header");

struct vhost_user_region {
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t mmap_offset;
} __attribute__((packed));
_Static_assert(sizeof(struct vhost_user_region) == 32, "vhost-user region");

struct vhost_user_mem {
    uint32_t nregions;
    uint32_t padding;
    struct vhost_user_region regions[VHOST_USER_MAX_REGIONS];
} __attribute__((packed));
_Static_assert(sizeof(struct vhost_user_mem) == 8 + 8 * 32, "vhost-user memory table");

struct vhost_user_state {
    uint32_t index;
    uint32_t num;
} __attribute__((packed));
_Static_assert(sizeof(struct vhost_user_state) == 8, "vhost-user vring state");

struct vhost_user_addr {
    uint32_t index;
    uint32_t flags;
    uint64_t desc_user_addr;
    uint64_t used_user_addr;
    uint64_t avail_user_addr;
    uint64_t log_guest_addr;
} __attribute__((packed));
_Static_assert(sizeof(struct vhost_user_addr) == 40, "vhost-user vring address");

struct vhost_user_config {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
    uint8_t region[VHOST_USER_CONFIG_MAX];
} __attribute__((packed));
_Static_assert(sizeof(struct vhost_user_config) == 12 + 256, "vhost-user config");

/* Largest payload of any message we handle. */
#define VHOST_USER_PAYLOAD_MAX sizeof(struct vhost_user_config)

/* ---- split virtqueues (virtio 1.1 section 2.6) ---- */

#define VIRTIO_F_VERSION_1       32
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX  29

#define VRING_DESC_F_NEXT      1u
#define VRING_DESC_F_WRITE     2u
#define VRING_DESC_F_INDIRECT  4u
#define VRING_AVAIL_F_NO_INTERRUPT 1u
#define VRING_USED_F_NO_NOTIFY 1u

#define VRING_MAX_SIZE 32768u

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
_Static_assert(sizeof(struct vring_desc) == 16, "vring desc");

struct vring_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[];  /* [num], then uint16_t used_event */
};

struct vring_used_elem {
    uint32_t id;
    uint32_t len;
};
_Static_assert(sizeof(struct vring_used_elem) == 8, "vring used elem");

struct vring_used {
    uint16_t flags;
    uint16_t idx;
    struct vring_used_elem ring[]; /* [num], then uint16_t avail_event */
};

/* ---- virtio-blk (virtio 1.1 section 5.2) ---- */

#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_SECTOR   512u
#define VIRTIO_BLK_WZ_F_UNMAP 1u

struct virtio_blk_outhdr {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_blk_outhdr) == 16, "virtio-blk header");

struct virtio_blk_discard_wz {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_blk_discard_wz) == 16, "virtio-blk discard segment");

struct virtio_blk_config {
    uint64_t capacity;          /* in 512-byte sectors */
    uint32_t size_max;
    uint32_t seg_max;
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors;
    uint32_t blk_size;
    uint8_t physical_block_exp;
    uint8_t alignment_offset;
    uint16_t min_io_size;
    uint32_t opt_io_size;
    uint8_t writeback;
    uint8_t unused0;
    uint16_t num_queues;
    uint32_t max_discard_sectors;
    uint32_t max_discard_seg;
    uint32_t discard_sector_alignment;
    uint32_t max_write_zeroes_sectors;
    uint32_t max_write_zeroes_seg;
    uint8_t write_zeroes_may_unmap;
    uint8_t unused1[3];
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_blk_config) == 60, "virtio-blk config");

/*
 * virtio's vring_need_event (VIRTIO_RING_F_EVENT_IDX): whether the event
 * index ev was passed when an index moved from old to new (u16, wrapping),
 * i.e. ev in [old, new). The driver (libvblk) and the device (iocd) both
 * decide notifications with it.
 */
static inline bool
vring_need_event(uint16_t ev, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - ev - 1) < (uint16_t)(new_idx - old);
}

#endif
