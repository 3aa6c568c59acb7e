package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/api"
	"github.com/standbyd/standbyd/internal/config"
	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/localnode"
	"github.com/standbyd/standbyd/internal/logging"
	"github.com/standbyd/standbyd/internal/metrics"
	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/reload"
	"github.com/standbyd/standbyd/internal/replay"
	"github.com/standbyd/standbyd/internal/upstream"
)

// restartOnlySettings names the settings that differ between a and b but
// are only read at start.
func restartOnlySettings(a, b *config.Config) []string {
	var out []string
	add := func(name string, differ bool) {
		if differ {
			out = append(out, name)
		}
	}
	add("api.socket", a.API.Socket != b.API.Socket)
	add("api.socket_mode", a.API.SocketMode != b.API.SocketMode)
	add("api.socket_group", a.API.SocketGroup != b.API.SocketGroup)
	add("api.queue_limit", a.API.QueueLimit != b.API.QueueLimit)
	add("api.max_connections", a.API.MaxConnections != b.API.MaxConnections)
	add("api.allow", !slices.EqualFunc(a.API.Allow, b.API.Allow, func(x, y config.AllowRule) bool {
		return slices.Equal(x.Ops, y.Ops) && slices.Equal(x.UIDs, y.UIDs) && slices.Equal(x.GIDs, y.GIDs)
	}))
	add("metrics.listen", a.Metrics.Listen != b.Metrics.Listen)
	add("metrics.web_config_file", a.Metrics.WebConfigFile != b.Metrics.WebConfigFile)
	add("standby.conninfo", a.Standby.Conninfo != b.Standby.Conninfo)
	add("log.format", a.Log.Format != b.Log.Format)
	add("channel.sessions", a.Channel.Sessions != b.Channel.Sessions)
	add("channel.max_in_flight", a.Channel.MaxInFlight != b.Channel.MaxInFlight)
	add("channel.heartbeat_interval", a.Channel.HeartbeatInterval != b.Channel.HeartbeatInterval)
	add("channel.reply_timeout", a.Channel.ReplyTimeout != b.Channel.ReplyTimeout)
	add("channel.backoff_min/backoff_max", a.Channel.BackoffMin != b.Channel.BackoffMin || a.Channel.BackoffMax != b.Channel.BackoffMax)
	add("channel.fail_fast", a.Channel.FailFast != b.Channel.FailFast)
	return out
}

// connectionSettings names the settings that differ between a and b and
// shape the channel's connection without being part of primary_conninfo
// (a change there reconnects by itself): a change to any of them
// reconnects too, so that it is never silently ignored.
func connectionSettings(a, b *config.Config) []string {
	var out []string
	add := func(name string, differ bool) {
		if differ {
			out = append(out, name)
		}
	}
	x, y := a.Channel, b.Channel
	add("channel.mode", x.Mode != y.Mode)
	add("channel.procedure", x.Procedure != y.Procedure)
	add("channel.application_name", x.ApplicationName != y.ApplicationName)
	add("channel.max_frame_size", x.MaxFrameSize != y.MaxFrameSize)
	add("channel.protocol_version", x.ProtocolVersion != y.ProtocolVersion)
	add("channel.connect_timeout", x.ConnectTimeout != y.ConnectTimeout)
	add("channel.tcp_user_timeout", x.TCPUserTimeout != y.TCPUserTimeout)
	add("channel.keepalives_idle", x.KeepalivesIdle != y.KeepalivesIdle)
	add("channel.keepalives_interval", x.KeepalivesIntvl != y.KeepalivesIntvl)
	add("channel.keepalives_count", x.KeepalivesCount != y.KeepalivesCount)
	add("channel.check_identity", x.CheckIdentity != y.CheckIdentity)
	add("standby.data_directory", a.Standby.DataDirectory != b.Standby.DataDirectory)
	add("standby.config_file", a.Standby.ConfigFile != b.Standby.ConfigFile)
	return out
}

// reloadDebounce is the quiet period after a change to a watched
// configuration file (standbyd's, postgresql.conf and its includes) before
// the reload.
const reloadDebounce = time.Second

// conninfoChanged is what makes the reloader call ConnectionChanged.
func conninfoChanged(old, st *reload.State) bool {
	return old.Target.Conninfo != st.Target.Conninfo || old.Target.SystemIdentifier != st.Target.SystemIdentifier ||
		old.Config.Channel.Database != st.Config.Channel.Database
}

func addConfigFlags(fs *pflag.FlagSet, configPath *string) {
	fs.StringVarP(configPath, "config", "c", "", "config file (default "+config.DefaultPath+" if it exists)")
	fs.String("data-directory", "", "the standby's data directory (standby.data_directory)")
	fs.String("pg-config-file", "", "the standby's postgresql.conf when not in the data directory (standby.config_file)")
	fs.String("conninfo", "", "connection string to use instead of primary_conninfo (channel.conninfo)")
	fs.String("database", "", "database the channel connects to (channel.database)")
	fs.String("socket", "", "local API socket (api.socket)")
	fs.String("metrics-listen", "", "address of the metrics listener, empty to disable (metrics.listen)")
	fs.String("log-level", "", "debug, info, warn or error (log.level)")
	fs.String("log-format", "", "auto, json or console (log.format)")
}

func newRunCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			load := func() (*config.Config, error) { return config.Load(configPath, cmd.Flags()) }
			if err := runDaemon(load); err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			return nil
		},
	}
	addConfigFlags(cmd.Flags(), &configPath)
	return cmd
}

func dialOptions(cfg *config.Config, t *upstream.Target) (conn.DialOptions, error) {
	mode, err := conn.ParseMode(cfg.Channel.Mode)
	if err != nil {
		return conn.DialOptions{}, err
	}
	return conn.DialOptions{
		Config:                 t.Config.Copy(),
		Mode:                   mode,
		Procedure:              cfg.Channel.Procedure,
		ClientName:             "standbyd " + version,
		MaxFrameSize:           cfg.Channel.MaxFrameSize,
		ExpectSystemIdentifier: t.SystemIdentifier,
		StatementTimeout:       conn.StatementTimeoutFor(cfg.Channel.ReplyTimeout),
		MaxVersion:             uint16(cfg.Channel.ProtocolVersion),
	}, nil
}

func runDaemon(loadConfig func() (*config.Config, error)) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log, level, err := logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	m := metrics.New(version)
	var sup *conn.Supervisor
	rl, err := reload.New(func() (*reload.State, error) {
		c, err := loadConfig()
		if err != nil {
			return nil, err
		}
		t, err := upstream.Resolve(c)
		if err != nil {
			return nil, err
		}
		return &reload.State{Config: c, Target: t}, nil
	}, reload.Hooks{
		Loaded: m.Reloaded,
		Applied: func(old, st *reload.State) {
			if err := logging.SetLevel(level, st.Config.Log.Level); err != nil {
				log.Warn("log level", zap.Error(err))
			}
			if !slices.Equal(old.Target.Warnings, st.Target.Warnings) {
				logTargetWarnings(log, st.Target)
			}
			for _, d := range restartOnlySettings(old.Config, st.Config) {
				log.Warn("this setting changes only when standbyd restarts", zap.String("setting", d))
			}
			if changed := connectionSettings(old.Config, st.Config); len(changed) > 0 && !conninfoChanged(old, st) {
				log.Info("the connection settings changed: reconnecting", zap.Strings("settings", changed))
				sup.Restart()
			}
		},
		ConnectionChanged: func(old, st *reload.State) {
			log.Info("the connection settings changed: reconnecting",
				zap.String("from", old.Target.Endpoint), zap.String("to", st.Target.Endpoint))
			sup.Restart()
		},
	}, log)
	if err != nil {
		return err
	}
	cfg = rl.Current().Config
	target := rl.Current().Target
	log.Info("standbyd starting",
		zap.String("version", version),
		zap.String("config_file", cfg.File),
		zap.String("primary_conninfo_source", target.Source),
		zap.String("primary", target.Endpoint),
		zap.String("mode", cfg.Channel.Mode),
		zap.String("database", cfg.Channel.Database))
	logTargetWarnings(log, target)

	sup, err = conn.NewSupervisor(conn.SupervisorConfig{
		Dial: func(ctx context.Context, connected func()) (*conn.Session, error) {
			st := rl.Current()
			// Resolved again at every attempt, as libpq does: the passfile,
			// the service file and the TLS files are read now, so a rotated
			// password or certificate is used without a reload.
			t, err := upstream.Resolve(st.Config)
			if err != nil {
				return nil, &conn.ConfigError{Err: err}
			}
			opts, err := dialOptions(st.Config, t)
			if err != nil {
				return nil, &conn.ConfigError{Err: err}
			}
			opts.OnConnected = connected
			return conn.Dial(ctx, opts)
		},
		SlowThreshold:     cfg.Channel.SlowThreshold,
		Sessions:          cfg.Channel.Sessions,
		MaxInFlight:       cfg.Channel.MaxInFlight,
		QueueLimit:        cfg.API.QueueLimit,
		FailFast:          cfg.Channel.FailFast,
		IdempotentOps:     func() []string { return rl.Current().Config.Channel.IdempotentOps },
		HeartbeatInterval: cfg.Channel.HeartbeatInterval,
		ReplyTimeout:      cfg.Channel.ReplyTimeout,
		ConnectTimeout:    cfg.Channel.ConnectTimeout,
		BackoffMin:        cfg.Channel.BackoffMin,
		BackoffMax:        cfg.Channel.BackoffMax,
		CloseTimeout:      cfg.Channel.CloseTimeout,
		Logger:            log.Named("channel").With(zap.String("primary", target.Endpoint)),
		Observer:          m,
	})
	if err != nil {
		return err
	}
	// The local node's role and timeline: a promoted node must not serve.
	// Read once before the first connection attempt, then every second.
	nodeWatcher, err := localnode.NewWatcher(localnode.Options{
		DataDirectory: func() string { return rl.Current().Config.Standby.DataDirectory },
		Conninfo:      cfg.Standby.Conninfo,
		Logger:        log.Named("localnode"),
		OnChange: func(n localnode.Node) {
			m.LocalNode(n)
			sup.SetLocal(conn.LocalNode{Known: n.Role != localnode.RoleUnknown, Standby: n.Role == localnode.RoleStandby, Timeline: n.Timeline})
		},
	})
	if err != nil {
		return err
	}
	m.WatchState(sup.State)
	m.WatchCalls(func() (int, int) { st := sup.Status(); return st.Waiting, st.InFlight })
	var replayWatcher *replay.Watcher
	if cfg.Standby.Conninfo != "" {
		replayWatcher, err = replay.New(cfg.Standby.Conninfo, cfg.Channel.HeartbeatInterval, log.Named("replay"), m.StandbyReplay)
		if err != nil {
			return err
		}
		m.WatchReplay()
	}

	// The supervisor has its own context: at shutdown the API stops
	// accepting first, then the sessions close.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	supCtx, supStop := context.WithCancel(context.Background())
	defer supStop()

	var wg sync.WaitGroup
	var httpSrv *http.Server
	if cfg.Metrics.Listen != "" {
		if f := cfg.Metrics.WebConfigFile; f != "" {
			if err := web.Validate(f); err != nil {
				return fmt.Errorf("metrics.web_config_file %s: %w", f, err)
			}
		}
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		httpSrv = &http.Server{Handler: healthMux(m, sup), ReadHeaderTimeout: 5 * time.Second}
		webConfig := cfg.Metrics.WebConfigFile
		wg.Add(1)
		go func() {
			defer wg.Done()
			// With an empty web config file the toolkit serves plain HTTP.
			flags := &web.FlagConfig{WebConfigFile: &webConfig}
			if err := web.Serve(ln, httpSrv, flags, logging.Slog(log.Named("http"))); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener", zap.Error(err))
			}
		}()
		log.Info("metrics listening", zap.String("address", ln.Addr().String()),
			zap.String("web_config_file", webConfig))
	}

	apiSrv, err := api.Listen(apiConfig(cfg, m, log), sup)
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := apiSrv.Serve(); err != nil {
			log.Error("api", zap.Error(err))
		}
	}()
	log.Info("api listening", zap.String("socket", apiSrv.Addr()), zap.Bool("socket_activation", apiSrv.Activated()))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = rl.Reload("SIGHUP")
			}
		}
	}()
	go func() {
		defer wg.Done()
		if err := rl.Watch(ctx, reloadDebounce); err != nil {
			log.Warn("configuration files are not watched; reload with SIGHUP", zap.Error(err))
		}
	}()

	if replayWatcher != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replayWatcher.Run(ctx)
		}()
	}
	nodeWatcher.Poll(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		nodeWatcher.Run(ctx)
	}()
	supDone := make(chan struct{})
	go func() {
		defer close(supDone)
		sup.Run(supCtx)
	}()
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	wg.Add(1)
	go func() {
		defer wg.Done()
		notifySystemd(ctx, sup, cfg.Channel, log)
	}()

	sig := <-sigs
	log.Info("shutting down", zap.String("signal", sig.String()))
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case sig := <-sigs:
			// A second signal is the operator insisting: stop waiting for
			// calls in flight and the polite close.
			log.Warn("second signal: exiting at once", zap.String("signal", sig.String()))
			_ = log.Sync()
			os.Exit(exitFailure)
		case <-finished:
		}
	}()
	// No new caller from here on; calls in progress get their answers.
	apiSrv.StopAccepting()
	log.Info("api stopped accepting")
	supStop()
	<-supDone
	stop()

	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = apiSrv.Shutdown(sctx)
	if httpSrv != nil {
		_ = httpSrv.Shutdown(sctx)
	}
	wg.Wait()
	log.Info("standbyd stopped")
	return nil
}

// apiConfig is the API server's configuration from standbyd's.
func apiConfig(cfg *config.Config, m *metrics.Metrics, log *zap.Logger) api.ServerConfig {
	mode, _ := cfg.API.Mode()
	policy := &api.Policy{}
	for _, r := range cfg.API.Allow {
		policy.Rules = append(policy.Rules, api.AllowRule{Ops: r.Ops, UIDs: r.UIDs, GIDs: r.GIDs})
	}
	slots := 0
	if cfg.API.QueueLimit > 0 {
		// The calls the supervisor lets wait, and those in flight on the
		// sessions.
		slots = cfg.API.QueueLimit + cfg.Channel.Sessions*cfg.Channel.MaxInFlight
	}
	slow := cfg.Channel.SlowThreshold
	if slow == 0 {
		slow = cfg.Channel.ReplyTimeout / 2
	}
	return api.ServerConfig{
		Socket:         cfg.API.Socket,
		SocketMode:     mode,
		SocketGroup:    cfg.API.SocketGroup,
		DefaultTimeout: cfg.API.DefaultCallTimeout,
		MaxTimeout:     cfg.API.MaxCallTimeout,
		MaxPayload:     cfg.Channel.MaxFrameSize - protocol.HeaderSize,
		MaxConns:       cfg.API.MaxConnections,
		CallSlots:      slots,
		Allow:          policy,
		Denied:         m.APIDenied,
		SQLCalls:       m.SQLCalls,
		SlowThreshold:  slow,
		Logger:         log.Named("api"),
	}
}

// healthMux serves /metrics, /healthz (the process answers) and /readyz (the
// channel is up).
func healthMux(m *metrics.Metrics, sup *conn.Supervisor) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if st := sup.Status(); st.State != conn.StateReady {
			msg := "channel " + st.State.String()
			if st.NotStandby {
				// Only this reason: the body may be read from afar, and a
				// connection error names hosts and users.
				msg += ": " + st.LastError
			}
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// logTargetWarnings logs what the conninfo parser noticed but libpq would
// accept (they hold no secret: the parser words them without values).
func logTargetWarnings(log *zap.Logger, t *upstream.Target) {
	for _, w := range t.Warnings {
		log.Warn("primary_conninfo", zap.String("source", t.Source), zap.String("warning", w))
	}
}
