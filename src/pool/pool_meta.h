/*
 * pool/pool_meta.h - the on-disk format of a pool, and its pure reader/writer.
 *
 * Everything here is free of reactors and bdevs: it turns bytes into a
 * validated in-memory image and back. The daemon (pool.c), the offline checker
 * (iocctl pool check) and the fuzzer link the same code, so what the checker
 * accepts is exactly what the daemon imports. docs/pool-format.md describes
 * the format; the structs below are that format (little-endian, packed).
 *
 * Device layout (byte offsets):
 *     0      superblock slot 0                 (4 KiB)
 *     4096   superblock slot 1                 (4 KiB)
 *     8192   metadata page p, slot s at 8192 + (2p + s) * 4096
 *            pages 0 .. vt_pages-1            volume table
 *            pages vt_pages .. n_pages-1      cluster table
 *     data_offset (cluster aligned)            cluster 0, 1, ... n_clusters-1
 */
#ifndef IOC_POOL_POOL_META_H
#define IOC_POOL_POOL_META_H

#include "ioc/common.h"

#include "lib/err.h"

#define IOC_POOL_PAGE_SIZE 4096u
#define IOC_POOL_SB_MAGIC 0x314c4f4f50434f49ull /* "IOCPOOL1" */
#define IOC_POOL_PAGE_MAGIC 0x50474d49u         /* "IMGP" */
#define IOC_POOL_VERSION 1u
#define IOC_POOL_MAX_VOLUMES 1024u
#define IOC_POOL_NAME_MAX 64u   /* pool and volume names, with the NUL */
#define IOC_POOL_ATTR_AREA 384u /* "key\0value\0key\0value\0\0" */
#define IOC_POOL_META_OFFSET (2 * IOC_POOL_PAGE_SIZE)
#define IOC_POOL_CLUSTER_MIN (64u * 1024)
#define IOC_POOL_CLUSTER_MAX (64u * 1024 * 1024)
#define IOC_POOL_CLUSTER_DEFAULT (1024u * 1024)

/* Volume flags. */
#define IOC_VOL_SNAPSHOT (1u << 0)  /* frozen image; has children, never written */
#define IOC_VOL_READ_ONLY (1u << 1) /* writes fail with -EROFS */
#define IOC_VOL_THICK (1u << 2)     /* every cluster allocated at creation */
#define IOC_VOL_FLAGS_KNOWN (IOC_VOL_SNAPSHOT | IOC_VOL_READ_ONLY | IOC_VOL_THICK)

enum ioc_pool_page_type {
    IOC_POOL_PAGE_VT = 1, /* volume table */
    IOC_POOL_PAGE_CT = 2, /* cluster table */
};

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the pool format is little-endian and is read with host-order structs"
#endif

/* Superblock: one 4 KiB slot; the valid slot with the highest seq wins. */
struct ioc_pool_sb {
    uint64_t magic;
    uint32_t crc;          /* CRC of the 4 KiB slot with this field zero */
    uint32_t version;
    uint64_t seq;          /* commit sequence number; slot = seq & 1 */
    uint8_t uuid[16];
    char name[IOC_POOL_NAME_MAX];
    uint64_t pool_size;    /* bytes of the device the pool uses */
    uint32_t cluster_size;
    uint32_t page_size;
    uint32_t max_volumes;
    uint32_t vt_pages;
    uint32_t ct_pages;
    uint32_t n_clusters;
    uint64_t data_offset;
    uint8_t reserved[IOC_POOL_PAGE_SIZE - 144];
} __attribute__((packed));
_Static_assert(sizeof(struct ioc_pool_sb) == IOC_POOL_PAGE_SIZE, "superblock is one page");

/* Header of every metadata page slot. */
struct ioc_pool_page_hdr {
    uint32_t magic;
    uint32_t crc;          /* CRC of the 4 KiB slot with this field zero */
    uint64_t seq;          /* commit that wrote this slot */
    uint32_t page_no;
    uint32_t type;         /* enum ioc_pool_page_type */
    uint8_t uuid[16];      /* the pool's: a stale page of an older pool never matches */
    uint8_t reserved[8];
} __attribute__((packed));
_Static_assert(sizeof(struct ioc_pool_page_hdr) == 48, "page header size");

#define IOC_POOL_PAGE_PAYLOAD (IOC_POOL_PAGE_SIZE - sizeof(struct ioc_pool_page_hdr))

/* A volume table entry; id 0 marks a free slot, else id = slot index + 1. */
struct ioc_pool_vol_disk {
    uint32_t id;
    uint32_t flags;
    uint32_t parent;       /* id of the snapshot below, 0 for none */
    uint32_t reserved0;
    uint64_t size;         /* bytes, a multiple of 512 */
    uint64_t create_seq;
    char name[IOC_POOL_NAME_MAX];
    uint8_t attrs[IOC_POOL_ATTR_AREA];
    uint8_t reserved[16];
} __attribute__((packed));
_Static_assert(sizeof(struct ioc_pool_vol_disk) == 496, "volume entry size");

/* A cluster table entry: who owns pool cluster i. owner 0 = free. */
struct ioc_pool_ct_entry {
    uint32_t owner;
    uint32_t lcluster;     /* logical cluster index inside the owner */
} __attribute__((packed));
_Static_assert(sizeof(struct ioc_pool_ct_entry) == 8, "cluster entry size");

#define IOC_POOL_VT_PER_PAGE (IOC_POOL_PAGE_PAYLOAD / sizeof(struct ioc_pool_vol_disk))
#define IOC_POOL_CT_PER_PAGE (IOC_POOL_PAGE_PAYLOAD / sizeof(struct ioc_pool_ct_entry))

/* Where things are, derived from (size, cluster size). */
struct ioc_pool_layout {
    uint32_t cluster_size;
    uint32_t vt_pages;
    uint32_t ct_pages;
    uint32_t n_clusters;
    uint64_t data_offset;
};

/*
 * The decoded metadata: the superblock in force and the newest committed
 * version of every page, unpacked into flat tables.
 */
struct ioc_pool_meta {
    struct ioc_pool_sb sb;
    struct ioc_pool_vol_disk *vt; /* sb.max_volumes entries */
    struct ioc_pool_ct_entry *ct; /* sb.n_clusters entries */
    uint8_t *page_slot;           /* per page: the slot holding the current version */
    uint64_t *page_seq;           /* per page: its seq */
    /* Per page: 1 if the other slot holds a write of a commit cut short (a seq
     * above the superblock's). The next commit reuses that seq, so it must
     * overwrite such a slot before its superblock would make it count. */
    uint8_t *page_uncommitted;
    uint32_t n_pages;
};

/** CRC used by the format (zlib's CRC-32). */
uint32_t ioc_pool_crc(const void *buf, size_t len);

/** Byte offset of metadata page p, slot s. */
static inline uint64_t
ioc_pool_page_offset(uint32_t p, unsigned s)
{
    return IOC_POOL_META_OFFSET + ((uint64_t)p * 2 + s) * IOC_POOL_PAGE_SIZE;
}

/**
 * Compute the layout of a pool of `size` bytes with clusters of cluster_size.
 * -EINVAL: cluster size not a power of two in 64KiB..64MiB; -ENOSPC: too
 * small for the metadata and one cluster (err says how small).
 */
int ioc_pool_layout_compute(uint64_t size, uint32_t cluster_size, struct ioc_pool_layout *out,
                            struct ioc_err *err);

/**
 * Build the metadata of an empty pool (seq 1, every page in slot 0).
 * Returns 0, -EINVAL/-ENOSPC (layout), or -ENOMEM. *out is new, free with
 * ioc_pool_meta_free().
 */
int ioc_pool_meta_format(const char *name, uint64_t size, uint32_t cluster_size,
                         struct ioc_pool_meta **out, struct ioc_err *err);

/** Free a meta image; accepts NULL. */
void ioc_pool_meta_free(struct ioc_pool_meta *m);

/** Fill a 4 KiB buffer with page p (header, payload, CRC) as of seq. */
void ioc_pool_meta_page_build(const struct ioc_pool_meta *m, uint32_t p, uint64_t seq, void *buf);

/** Fill a 4 KiB buffer with the superblock (CRC computed). */
void ioc_pool_meta_sb_build(const struct ioc_pool_meta *m, void *buf);

/** Called once per problem found; msg is borrowed for the call. */
typedef void (*ioc_pool_problem_cb)(void *arg, const char *msg);

/**
 * Pick the superblock from the two slots at the start of the device (8 KiB in
 * `buf`). dev_size is the device's size. Returns 0 and *sb, or -EINVAL
 * ("no valid superblock: slot 0: bad magic; slot 1: CRC mismatch") or
 * -ERANGE (the pool claims more bytes than the device has).
 */
int ioc_pool_sb_pick(const void *buf, uint64_t dev_size, struct ioc_pool_sb *sb,
                     struct ioc_err *err);

/** Bytes from offset 0 to the end of the metadata pages (what to read before decode). */
uint64_t ioc_pool_meta_region_size(const struct ioc_pool_sb *sb);

/**
 * Decode and validate the metadata region `buf` (`len` bytes from device
 * offset 0, at least ioc_pool_meta_region_size()) under superblock sb.
 * Every structure is checked: page slots (CRC, uuid, number, type, seq),
 * volume entries (names, flags, sizes, parents without cycles, attributes),
 * cluster entries (owner exists, index inside the owner, no logical cluster
 * held twice). Each problem goes to problem_cb (may be NULL); a problem
 * makes the result -EINVAL with the first one in err. On success *out is a
 * new image (free with ioc_pool_meta_free()); on failure *out is NULL,
 * unless keep_on_error is set and the pages could be read at all (the
 * checker keeps going to report leaks).
 */
int ioc_pool_meta_decode(const struct ioc_pool_sb *sb, const void *buf, uint64_t len,
                         bool keep_on_error, ioc_pool_problem_cb problem_cb, void *cb_arg,
                         struct ioc_pool_meta **out, struct ioc_err *err);

/** Number of logical clusters of a volume of `size` bytes. */
static inline uint64_t
ioc_pool_vol_clusters(uint64_t size, uint32_t cluster_size)
{
    return (size + cluster_size - 1) / cluster_size;
}

/** Check a pool or volume name: 1..63 of [A-Za-z0-9._:-]. 0 or -EINVAL (err says why). */
int ioc_pool_name_check(const char *what, const char *name, struct ioc_err *err);

/* ---- volume attributes: "key\0value\0...\0" in a fixed area ---- */

/** Look key up; returns the value (borrowed from attrs) or NULL. */
const char *ioc_pool_attr_get(const uint8_t *attrs, const char *key);

/**
 * Set key to value (NULL removes it). -ENOSPC if it does not fit, -EINVAL
 * for an empty key or one longer than 63 bytes.
 */
int ioc_pool_attr_set(uint8_t *attrs, const char *key, const char *value);

/** Check that the area is well formed (the decoder calls it). 0 or -EINVAL. */
int ioc_pool_attr_check(const uint8_t *attrs);

#endif
