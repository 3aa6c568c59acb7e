// Package logging builds standbyd's zap logger: JSON when stderr is not a
// terminal (systemd's journal, a file), a console encoder on a terminal. The
// level is an AtomicLevel so that a reload can change it.
//
// zap's default sampling drops repeated lines; standbyd keeps it off so that
// every connection event is logged. Counting belongs to metrics, not logs.
package logging

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"
)

// New returns a logger writing to stderr. format is "auto", "json" or
// "console"; level is "debug", "info", "warn" or "error".
func New(level, format string) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zap.ParseAtomicLevel(level)
	if err != nil {
		return nil, lvl, fmt.Errorf("log level: %w", err)
	}
	if format == "auto" {
		format = "json"
		if os.Getenv("JOURNAL_STREAM") == "" && term.IsTerminal(int(os.Stderr.Fd())) {
			format = "console"
		}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, lvl, fmt.Errorf("log format %q is not auto, json or console", format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), lvl)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr))), lvl, nil
}

// SetLevel changes the level of a running logger.
func SetLevel(lvl zap.AtomicLevel, level string) error {
	l, err := zapcore.ParseLevel(level)
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	lvl.SetLevel(l)
	return nil
}
