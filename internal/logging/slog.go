package logging

import (
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// Slog returns a log/slog logger that writes through l, for libraries that
// take one (the exporter-toolkit's web server), so that their lines share
// standbyd's format, level and destination. zap's own bridge does the work;
// slog groups become nested objects.
func Slog(l *zap.Logger) *slog.Logger {
	return slog.New(zapslog.NewHandler(l.Core(), zapslog.WithName(l.Name()), zapslog.WithCaller(true)))
}
