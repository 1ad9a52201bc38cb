/*
 * The SCSI extension's and the reservation operation's structs, written in
 * C from docs/PROTOCOL.md with natural alignment, so that the compiler
 * (for x86_64 and, with -m32, x86_32) checks the Go layout tables.
 */
#include <stdint.h>

struct blkif_request_extra {
	uint8_t  operation;   /* BLKIF_OP_EXTRA_DATA (0x7f) */
	uint8_t  type;        /* BLKIF_EXTRA_TYPE_SCSI_CMD (1) */
	uint8_t  cmd_len;
	uint8_t  flags;
	uint64_t id;          /* same offset as every request's id */
	uint32_t cmd_gref;
	uint32_t data_len;
};

struct blkif_response_extra {
	uint32_t resid_len;
	uint8_t  sense_len;
	uint8_t  scsi_status;
	uint8_t  type;
	uint8_t  _reserved1;
	uint8_t  operation;   /* BLKIF_OP_EXTRA_DATA, where a response has it */
	uint8_t  _reserved2;
	int16_t  status;      /* where a response has it */
};

struct blkif_request_reservation {
	uint8_t  operation;   /* BLKIF_OP_RESERVATION (0x40) */
	uint8_t  action;
	uint8_t  type;
	uint8_t  flags;
	uint64_t id;
	uint64_t key;
	uint64_t sa_key;
	uint32_t gref;
};
