// Package protocol encodes and decodes the frames of the standbyd channel,
// protocol version 1. It does no I/O.
//
// The specification is docs/protocol.md; the C side is
// extension/standbyd_protocol.c. In short: each CopyData message carries one
// frame; every frame starts with a 12-byte header, big-endian:
//
//	kind (1) | version or status (1) | op (2) | request id (4) | payload length (4) | payload
//
// Requests have kind 'Q' and version 1; replies have kind 'A', status 0 (ok)
// or 1 (error: SQLSTATE and message), and echo the request's op and id.
//
// Parsers follow the ParseX(buf) (X, error) style with explicit length checks
// before every read; they never panic, whatever the input (they are fuzzed).
// Payload slices returned by parsers alias the input buffer.
package protocol
