/*-------------------------------------------------------------------------
 *
 * standbyd_protocol.c
 *		Encoding and decoding of standbyd channel frames (protocol v1 to v3).
 *
 * A frame is carried in exactly one CopyData message.  Every frame starts
 * with a 12-byte header (kind, version or status, op, request id, payload
 * length), big-endian like the rest of the PostgreSQL wire protocol.  See
 * docs/protocol.md for the specification.
 *
 * The decoder trusts nothing: every length is checked before it is used.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "port/pg_bswap.h"

#include "standbyd_protocol.h"

uint16
sbd_get_u16(const char *p)
{
	uint16		v;

	memcpy(&v, p, sizeof(v));
	return pg_ntoh16(v);
}

uint32
sbd_get_u32(const char *p)
{
	uint32		v;

	memcpy(&v, p, sizeof(v));
	return pg_ntoh32(v);
}

uint64
sbd_get_u64(const char *p)
{
	uint64		v;

	memcpy(&v, p, sizeof(v));
	return pg_ntoh64(v);
}

void
sbd_put_u8(StringInfo out, uint8 v)
{
	appendBinaryStringInfoNT(out, (const char *) &v, sizeof(v));
}

void
sbd_put_u16(StringInfo out, uint16 v)
{
	v = pg_hton16(v);
	appendBinaryStringInfoNT(out, (const char *) &v, sizeof(v));
}

void
sbd_put_u32(StringInfo out, uint32 v)
{
	v = pg_hton32(v);
	appendBinaryStringInfoNT(out, (const char *) &v, sizeof(v));
}

void
sbd_put_u64(StringInfo out, uint64 v)
{
	v = pg_hton64(v);
	appendBinaryStringInfoNT(out, (const char *) &v, sizeof(v));
}

/*
 * Parse a request frame.  On SBD_PARSE_OK *req is filled in completely.  On
 * BAD_KIND, BAD_LENGTH and BAD_VERSION the header was readable, so req->op
 * and req->id hold what the client sent (the error reply echoes them).  On
 * SHORT nothing is filled in.
 */
SbdParseResult
sbd_parse_request(const char *buf, size_t len, SbdRequest *req)
{
	memset(req, 0, sizeof(*req));

	if (len < SBD_HEADER_SIZE)
		return SBD_PARSE_SHORT;

	req->version = (uint8) buf[1];
	req->op = sbd_get_u16(buf + 2);
	req->id = sbd_get_u32(buf + 4);
	req->payload_len = sbd_get_u32(buf + 8);

	if ((uint8) buf[0] != SBD_KIND_REQUEST)
		return SBD_PARSE_BAD_KIND;
	if ((size_t) req->payload_len != len - SBD_HEADER_SIZE)
		return SBD_PARSE_BAD_LENGTH;
	if (req->version != SBD_FRAME_VERSION)
		return SBD_PARSE_BAD_VERSION;

	req->payload = buf + SBD_HEADER_SIZE;
	return SBD_PARSE_OK;
}

const char *
sbd_parse_result_message(SbdParseResult r)
{
	switch (r)
	{
		case SBD_PARSE_OK:
			return "ok";
		case SBD_PARSE_SHORT:
			return "frame shorter than the 12-byte header";
		case SBD_PARSE_BAD_KIND:
			return "frame is not a request (kind byte is not 'Q')";
		case SBD_PARSE_BAD_LENGTH:
			return "frame length field does not match the frame size";
		case SBD_PARSE_BAD_VERSION:
			return "unsupported frame version";
	}
	return "malformed frame";
}

/*
 * Start an ok reply in out (which is reset).  The payload is appended by the
 * caller; sbd_reply_finish() then fills in the length field.
 */
void
sbd_reply_begin(StringInfo out, uint16 op, uint32 id)
{
	resetStringInfo(out);
	sbd_put_u8(out, SBD_KIND_REPLY);
	sbd_put_u8(out, SBD_STATUS_OK);
	sbd_put_u16(out, op);
	sbd_put_u32(out, id);
	sbd_put_u32(out, 0);		/* payload length, set by sbd_reply_finish */
}

void
sbd_reply_finish(StringInfo out)
{
	uint32		len;

	Assert(out->len >= SBD_HEADER_SIZE);
	len = pg_hton32((uint32) (out->len - SBD_HEADER_SIZE));
	memcpy(out->data + 8, &len, sizeof(len));
}

/*
 * Append a UTF-8 text cut to at most max bytes on a character boundary,
 * preceded by its length (u16) when with_length.
 */
static void
put_text(StringInfo out, const char *text, int max, bool with_length)
{
	int			len = text ? strlen(text) : 0;

	if (len > max)
		len = pg_encoding_mbcliplen(PG_UTF8, text, len, max);
	if (with_length)
		sbd_put_u16(out, (uint16) len);
	if (len > 0)
		appendBinaryStringInfoNT(out, text, len);
}

/*
 * Replace whatever is in out with an error reply.  Version 1 and 2: the
 * SQLSTATE, then the message up to the end of the payload.  Version 3:
 * the SQLSTATE, then message, detail and hint, each preceded by its length
 * (u16; 0 when there is none).  Each text is cut on a character boundary
 * (message and detail at 8000 bytes, hint at 2000), so the payload stays
 * far below any frame limit.
 */
void
sbd_reply_error_full(StringInfo out, uint16 version, uint16 op, uint32 id,
					 const char *sqlstate, const char *message,
					 const char *detail, const char *hint)
{
	bool		v3 = version >= SBD_PROTOCOL_VERSION_ERROR_DETAIL;

	Assert(strlen(sqlstate) == 5);

	sbd_reply_begin(out, op, id);
	out->data[1] = SBD_STATUS_ERROR;
	appendBinaryStringInfoNT(out, sqlstate, 5);
	put_text(out, message, SBD_ERROR_MESSAGE_MAX, v3);
	if (v3)
	{
		put_text(out, detail, SBD_ERROR_DETAIL_MAX, true);
		put_text(out, hint, SBD_ERROR_HINT_MAX, true);
	}
	sbd_reply_finish(out);
}

void
sbd_reply_error(StringInfo out, uint16 op, uint32 id,
				const char *sqlstate, const char *message)
{
	sbd_reply_error_full(out, standbyd_session_version, op, id, sqlstate,
						 message, NULL, NULL);
}

/*
 * Write a goodbye frame (protocol version 2) into buf, which has room for
 * SBD_GOODBYE_MAX bytes, and return its length.  The backend is ending;
 * last_id is the id of the last request it read, and no later request will
 * be read.  Op 0, status 0; the payload is laid out as an error payload
 * (SQLSTATE, then the message, cut short and kept to printable ASCII so that
 * it needs no conversion).  No allocation: this runs while a FATAL error is
 * being reported.
 */
size_t
sbd_goodbye(char *buf, uint32 last_id, const char *sqlstate,
			const char *message)
{
	size_t		len = SBD_HEADER_SIZE + 5;
	uint32		v;

	buf[0] = SBD_KIND_GOODBYE;
	buf[1] = SBD_STATUS_OK;
	buf[2] = buf[3] = 0;
	v = pg_hton32(last_id);
	memcpy(buf + 4, &v, sizeof(v));
	memcpy(buf + SBD_HEADER_SIZE, sqlstate, 5);
	for (const char *p = message; p && *p && len < SBD_GOODBYE_MAX; p++)
		buf[len++] = (*p >= 32 && *p <= 126) ? *p : '?';
	v = pg_hton32((uint32) (len - SBD_HEADER_SIZE));
	memcpy(buf + 8, &v, sizeof(v));
	return len;
}
