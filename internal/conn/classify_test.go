package conn

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

func pgErr(code string) error {
	return fmt.Errorf("connecting to the primary: %w", &pgconn.PgError{Severity: "FATAL", Code: code})
}

// The SQLSTATEs docs/liveness.md names, spelled out here (not taken from
// configurationSQLStates, which could then lose one unnoticed).
// claim: liveness.configuration-classes
func TestClassifyConfiguration(t *testing.T) {
	cases := map[string]error{
		"wrong password 28P01":            pgErr("28P01"),
		"no pg_hba entry 28000":           pgErr("28000"),
		"missing database 3D000":          pgErr("3D000"),
		"extension not created 3F000":     pgErr("3F000"),
		"extension not created 42883":     pgErr("42883"),
		"execute not granted 42501":       pgErr("42501"),
		"startup parameter refused 42704": pgErr("42704"),
		"startup parameter refused 55P02": pgErr("55P02"),
		"identity mismatch":               &ConfigError{Err: &IdentityError{Want: 1, Got: 2}},
		"protocol mismatch":               fmt.Errorf("hello: %w", &ProtocolError{Msg: "version 2"}),
		"unknown authority":               fmt.Errorf("tls: %w", x509.UnknownAuthorityError{}),
		"hostname":                        fmt.Errorf("tls: %w", x509.HostnameError{Host: "db"}),
		"invalid cert":                    fmt.Errorf("tls: %w", x509.CertificateInvalidError{Reason: x509.Expired}),
		"extension refused":               &EnterError{Err: &pgconn.PgError{Code: pgerrcode.UndefinedFunction}},
		"execute not granted":             &EnterError{Err: &pgconn.PgError{Code: pgerrcode.InsufficientPrivilege}},
	}
	for code := range configurationSQLStates {
		cases["sqlstate "+code] = pgErr(code)
	}
	for name, err := range cases {
		if got := Classify(err); got != ClassConfiguration {
			t.Errorf("%s: Classify(%v) = %s, want configuration", name, err, got)
		}
	}
}

// claim: liveness.transient-classes
func TestClassifyTransient(t *testing.T) {
	cases := map[string]error{
		"admin shutdown 57P01":       pgErr("57P01"),
		"starting up 57P03":          pgErr("57P03"),
		"too many connections 53300": pgErr("53300"),
		"refused":                    &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
		"eof":                        fmt.Errorf("receive: %w", io.ErrUnexpectedEOF),
		"timeout":                    fmt.Errorf("dial: %w", os.ErrDeadlineExceeded),
		"anything else":              errors.New("something else"),
	}
	for name, err := range cases {
		if got := Classify(err); got != ClassTransient {
			t.Errorf("%s: Classify(%v) = %s, want transient", name, err, got)
		}
	}
}
