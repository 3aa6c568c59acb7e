package api

import (
	"fmt"
	"io"
	"slices"

	"go.uber.org/zap"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/api/fastproto"
)

// sqlIdentity is the SQL session a fast path connection said it calls for
// (an identify frame). It only attributes: peer credentials and api.allow
// stay the authority. Its log fields and metric are built once per frame,
// so that a request costs nothing more for them.
type sqlIdentity struct {
	fastproto.Identify
	fields []zap.Field
	count  func(result string) // nil: no metric
}

func (s *Server) newIdentity(base []zap.Field, id fastproto.Identify) *sqlIdentity {
	w := &sqlIdentity{Identify: id}
	fields := make([]zap.Field, 0, len(base)+3)
	fields = append(fields, base...)
	w.fields = slices.Clip(append(fields, zap.Uint32("sql_pid", id.PID), zap.String("sql_role", id.Role),
		zap.String("sql_database", id.Database)))
	if s.cfg.SQLCalls != nil {
		w.count = s.cfg.SQLCalls(id.Database, id.Role)
	}
	return w
}

// counted counts a call of w's session answered with e (nil: ok).
func (w *sqlIdentity) counted(e *fastproto.ErrorReply) {
	if w == nil || w.count == nil {
		return
	}
	if e != nil {
		w.count(e.Kind)
		return
	}
	w.count("ok")
}

// logFields are the fields of a log line about the connection's caller.
func (fc *fastConn) logFields() []zap.Field {
	if fc.who != nil {
		return fc.who.fields
	}
	return fc.fields
}

// identify reads an identify frame's body; the requests read after it are
// the new session's. A malformed one is answered bad_request with id 0 and
// the connection goes on; the error ends reading (the connection broke).
func (fc *fastConn) identify(h fastproto.Header) error {
	if h.Length > fastproto.MaxIdentifySize {
		if n, err := fc.br.Discard(int(h.Length)); err != nil {
			return fc.readEnded(err, fastproto.HeaderSize+n)
		}
		fc.badIdentify(fmt.Errorf("%w: %d bytes, at most %d", fastproto.ErrBadIdentify, h.Length, fastproto.MaxIdentifySize))
		return nil
	}
	var buf [fastproto.MaxIdentifySize]byte
	body := buf[:h.Length]
	if n, err := io.ReadFull(fc.br, body); err != nil {
		return fc.readEnded(err, fastproto.HeaderSize+n)
	}
	id, err := fastproto.ParseIdentifyBody(h, body)
	if err != nil {
		fc.badIdentify(err)
		return nil
	}
	if fc.who != nil && fc.who.Identify == id {
		return nil
	}
	fc.who = fc.s.newIdentity(fc.fields, id)
	if ce := fc.s.log.Check(zap.DebugLevel, "api fast path: caller identified its SQL session"); ce != nil {
		ce.Write(fc.who.fields...)
	}
	return nil
}

// badIdentify answers a malformed identify frame. Only a connection's
// first one is logged: a caller repeating it cannot flood the log.
func (fc *fastConn) badIdentify(err error) {
	if !fc.badIdentLogged {
		fc.badIdentLogged = true
		fc.s.log.Warn("api fast path: malformed identify frame", append(fc.logFields(), zap.Error(err))...)
	}
	fc.reply(0, 0, nil, client.KindBadRequest, err.Error())
}
