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

func TestClassifyConfiguration(t *testing.T) {
	cases := map[string]error{
		"identity mismatch":   &ConfigError{Err: &IdentityError{Want: 1, Got: 2}},
		"protocol mismatch":   fmt.Errorf("hello: %w", &ProtocolError{Msg: "version 2"}),
		"unknown authority":   fmt.Errorf("tls: %w", x509.UnknownAuthorityError{}),
		"hostname":            fmt.Errorf("tls: %w", x509.HostnameError{Host: "db"}),
		"invalid cert":        fmt.Errorf("tls: %w", x509.CertificateInvalidError{Reason: x509.Expired}),
		"extension refused":   &EnterError{Err: &pgconn.PgError{Code: pgerrcode.UndefinedFunction}},
		"execute not granted": &EnterError{Err: &pgconn.PgError{Code: pgerrcode.InsufficientPrivilege}},
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

func TestClassifyTransient(t *testing.T) {
	cases := map[string]error{
		"admin shutdown":       pgErr(pgerrcode.AdminShutdown),
		"starting up":          pgErr(pgerrcode.CannotConnectNow),
		"too many connections": pgErr(pgerrcode.TooManyConnections),
		"refused":              &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
		"eof":                  fmt.Errorf("receive: %w", io.ErrUnexpectedEOF),
		"timeout":              fmt.Errorf("dial: %w", os.ErrDeadlineExceeded),
		"anything else":        errors.New("something else"),
	}
	for name, err := range cases {
		if got := Classify(err); got != ClassTransient {
			t.Errorf("%s: Classify(%v) = %s, want transient", name, err, got)
		}
	}
}
