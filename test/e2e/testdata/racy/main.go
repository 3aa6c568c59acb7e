// Command racy has a data race on purpose: built with -race, it shows what
// the end-to-end tests must catch in the daemon's output. With -clean it
// exits without racing.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	clean := flag.Bool("clean", false, "exit without racing")
	flag.Parse()
	if *clean {
		return
	}
	n := 0
	done := make(chan struct{})
	go func() { n++; close(done) }()
	n++
	<-done
	time.Sleep(10 * time.Millisecond)
	fmt.Fprintln(os.Stderr, "racy: done", n)
}
