// Command pipeline measures one channel session carrying several callers,
// with protocol version 1 (one request in flight) and version 2
// (pipelined), against a primary that has the extension:
//
//	go run ./bench/pipeline -conninfo 'host=... port=... user=... dbname=postgres' [-callers 8] [-d 5s]
//
// It prints requests per second for ping and for an 8-byte echo (a handler
// registered as op 256 that returns its payload, or N when -echo-op 0).
// A driver, not a test: figures depend on the machine.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/protocol"
)

func main() {
	conninfo := flag.String("conninfo", "", "libpq connection string of the primary")
	callers := flag.Int("callers", 8, "concurrent callers on the one session")
	d := flag.Duration("d", 5*time.Second, "duration of each measurement")
	rounds := flag.Int("rounds", 3, "rounds (each measures every case once)")
	echoOp := flag.Int("echo-op", 256, "op of a handler that returns its payload (0: use N)")
	only := flag.Int("version", 0, "measure only this protocol version (0: both)")
	flag.Parse()
	cfg, err := pgconn.ParseConfig(*conninfo)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	type work struct {
		name    string
		op      uint16
		payload []byte
	}
	works := []work{{"ping", protocol.OpPing, nil}}
	if *echoOp > 0 {
		works = append(works, work{"echo-8B", uint16(*echoOp), []byte("12345678")})
	} else {
		works = append(works, work{"N", protocol.OpN, protocol.AppendN(nil, [3]int32{1, 2, 3})})
	}
	for r := 1; r <= *rounds; r++ {
		for _, v := range []uint16{protocol.Version1, protocol.Version2} {
			if *only != 0 && int(v) != *only {
				continue
			}
			for _, w := range works {
				rate, err := measure(cfg, v, *callers, *d, w.op, w.payload)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				fmt.Printf("round %d  version %d  %-8s  %d callers  %8.0f req/s\n", r, v, w.name, *callers, rate)
			}
		}
	}
}

func measure(cfg *pgconn.Config, version uint16, callers int, d time.Duration, op uint16, payload []byte) (float64, error) {
	sup, err := conn.NewSupervisor(conn.SupervisorConfig{
		Dial: func(ctx context.Context, connected func()) (*conn.Session, error) {
			return conn.Dial(ctx, conn.DialOptions{Config: cfg.Copy(), ClientName: "pipeline-bench", OnConnected: connected, MaxVersion: version})
		},
		HeartbeatInterval: 2 * time.Second, ReplyTimeout: 10 * time.Second, ConnectTimeout: 10 * time.Second,
		BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second, Sessions: 1,
	})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sup.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for sup.State() != conn.StateReady {
		if st := sup.Status(); st.LastError != "" {
			return 0, fmt.Errorf("connecting: %s", st.LastError)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var total atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	end := time.Now().Add(d)
	start := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := sup.Call(cctx, op, payload)
				ccancel()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(total.Load()) / time.Since(start).Seconds(), nil
}
