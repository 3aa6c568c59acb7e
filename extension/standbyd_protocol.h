/*-------------------------------------------------------------------------
 *
 * standbyd_protocol.h
 *		Frame layout of the standbyd channel, protocol versions 1 to 3.
 *
 * The byte-by-byte specification is docs/protocol.md; the Go side is
 * internal/protocol.  Everything here is pure byte handling: no I/O, no
 * catalog access, no ereport().
 *
 *-------------------------------------------------------------------------
 */
#ifndef STANDBYD_PROTOCOL_H
#define STANDBYD_PROTOCOL_H

#include "lib/stringinfo.h"

/*
 * Protocol versions the server speaks (hello picks one).  Version 2 lets the
 * client pipeline requests and adds the goodbye frame; version 3 adds detail
 * and hint to the error payload.  The header is the same, so every frame
 * still carries frame version 1.
 */
#define SBD_PROTOCOL_VERSION_MIN	1
#define SBD_PROTOCOL_VERSION_MAX	3
#define SBD_PROTOCOL_VERSION_ERROR_DETAIL	3
#define SBD_FRAME_VERSION			1

#define SBD_KIND_REQUEST			'Q'
#define SBD_KIND_REPLY				'A'
#define SBD_KIND_GOODBYE			'G'
#define SBD_HEADER_SIZE				12

#define SBD_STATUS_OK				0
#define SBD_STATUS_ERROR			1

/* Built-in operations use the ASCII code of a letter. */
#define SBD_OP_HELLO				'H'
#define SBD_OP_PING					'P'
#define SBD_OP_N					'N'
#define SBD_OP_SETTING				'S'
#define SBD_OP_WAL					'W'
#define SBD_OP_PAGE					'B'
#define SBD_FIRST_USER_OP			0x0100

#define SBD_OPFLAG_BUILTIN			0x01

#define SBD_HELLO_NAME_MAX			64
#define SBD_ERROR_MESSAGE_MAX		8000
#define SBD_ERROR_DETAIL_MAX		8000
#define SBD_ERROR_HINT_MAX			2000

/* A request frame, as read off the wire.  payload points into the buffer. */
typedef struct SbdRequest
{
	uint8		version;
	uint16		op;
	uint32		id;
	uint32		payload_len;
	const char *payload;
} SbdRequest;

/* Why a request frame could not be used. */
typedef enum SbdParseResult
{
	SBD_PARSE_OK = 0,
	SBD_PARSE_SHORT,			/* shorter than the header: no id to echo */
	SBD_PARSE_BAD_KIND,			/* not a request frame */
	SBD_PARSE_BAD_LENGTH,		/* length field disagrees with frame size */
	SBD_PARSE_BAD_VERSION		/* frame version we do not speak */
} SbdParseResult;

extern SbdParseResult sbd_parse_request(const char *buf, size_t len,
										SbdRequest *req);
extern const char *sbd_parse_result_message(SbdParseResult r);

extern void sbd_reply_begin(StringInfo out, uint16 op, uint32 id);
extern void sbd_reply_finish(StringInfo out);
/*
 * The protocol version hello chose for this channel (1 until hello); it
 * decides the error payload's layout.  Defined in standbyd.c.
 */
extern uint16 standbyd_session_version;

/* An error reply in the layout of the channel's version, no detail or hint. */
extern void sbd_reply_error(StringInfo out, uint16 op, uint32 id,
							const char *sqlstate, const char *message);

/*
 * An error reply in the layout of the given protocol version: detail and
 * hint (UTF-8, NULL for none) are carried from version 3 on and dropped
 * before.
 */
extern void sbd_reply_error_full(StringInfo out, uint16 version, uint16 op,
								 uint32 id, const char *sqlstate,
								 const char *message, const char *detail,
								 const char *hint);

/* Room for a goodbye frame: header, SQLSTATE, a short message. */
#define SBD_GOODBYE_MAX				(SBD_HEADER_SIZE + 5 + 200)
extern size_t sbd_goodbye(char *buf, uint32 last_id, const char *sqlstate,
						  const char *message);

/* Big-endian helpers for payloads. */
extern void sbd_put_u8(StringInfo out, uint8 v);
extern void sbd_put_u16(StringInfo out, uint16 v);
extern void sbd_put_u32(StringInfo out, uint32 v);
extern void sbd_put_u64(StringInfo out, uint64 v);
extern uint16 sbd_get_u16(const char *p);
extern uint32 sbd_get_u32(const char *p);
extern uint64 sbd_get_u64(const char *p);

#endif							/* STANDBYD_PROTOCOL_H */
