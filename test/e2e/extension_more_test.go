package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/protocol"
)

// register_handler checks its arguments: an op code outside 256..65535 and
// a name that is not an identifier of at most 63 characters are 22023, a
// function that does not take and return bytea is 42P13.
// claim: extension.register-checks
// claim: protocol.op-ranges
func TestRegisterHandlerChecksItsArguments(t *testing.T) {
	needEnv(t)
	primarySQL(t, "CREATE OR REPLACE FUNCTION public.e2e_reg(b bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT b $$")
	t.Cleanup(func() { primarySQL(t, "DROP FUNCTION IF EXISTS public.e2e_reg(bytea)") })
	pc := superuser(t, "primary", "")
	for _, c := range []struct{ call, sqlstate string }{
		{"255, 'e2e_reg', 'public.e2e_reg(bytea)'", "22023"},
		{"65536, 'e2e_reg', 'public.e2e_reg(bytea)'", "22023"},
		{"290, '" + strings.Repeat("n", 64) + "', 'public.e2e_reg(bytea)'", "22023"},
		{"290, 'not an identifier', 'public.e2e_reg(bytea)'", "22023"},
		{"290, 'e2e_reg', 'pg_catalog.now()'", "42P13"},
	} {
		_, err := pc.Exec(ctxT(t, 10*time.Second), "SELECT standbyd.register_handler("+c.call+")").ReadAll()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != c.sqlstate {
			t.Errorf("register_handler(%s): %v, want %s", c.call, err, c.sqlstate)
		}
	}
	primarySQL(t, "SELECT standbyd.register_handler(290, '"+strings.Repeat("n", 63)+"', 'public.e2e_reg(bytea)'); SELECT standbyd.unregister_handler(290)")
}

// The server answers the CALL with CopyBothResponse, overall format 0 and
// zero columns.
// claim: protocol.copy-both-response
func TestCopyBothResponseHasNoColumns(t *testing.T) {
	needEnv(t)
	pc := superuser(t, "primary", "")
	pc.Frontend().Send(&pgproto3.Query{String: "CALL standbyd.serve()"})
	if err := pc.Frontend().Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := pc.ReceiveMessage(ctxT(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := msg.(*pgproto3.CopyBothResponse); ok {
			if m.OverallFormat != 0 || len(m.ColumnFormatCodes) != 0 {
				t.Fatalf("CopyBothResponse: format %d, %d columns", m.OverallFormat, len(m.ColumnFormatCodes))
			}
			break
		}
	}
	ch := &channel{t: t, pc: pc}
	wantOK(t, ch.call(protocol.OpPing, 1, nil), "ping")
	ch.finish()
}

// The library is loaded by the CALL itself: the test primary has nothing in
// shared_preload_libraries, and its channels work.
// claim: extension.no-preload
func TestServesWithoutPreloading(t *testing.T) {
	needEnv(t)
	if got := primarySQL(t, "SHOW shared_preload_libraries"); strings.Contains(got, "standbyd") {
		t.Fatalf("shared_preload_libraries = %q", got)
	}
	ch := enter(t, superuser(t, "primary", ""))
	wantOK(t, ch.call(protocol.OpPing, 1, nil), "ping")
	ch.finish()
}
