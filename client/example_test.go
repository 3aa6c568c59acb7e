package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/standbyd/standbyd/client"
)

// Calling a handler registered on the primary, and telling its error apart
// from a channel problem.
func ExampleClient_Call() {
	c := client.New("/run/standbyd/standbyd.sock")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	reply, err := c.Call(ctx, "echo", []byte("hello"))
	var apiErr *client.Error
	switch {
	case err == nil:
		fmt.Printf("%s\n", reply)
	case errors.As(err, &apiErr) && apiErr.Kind == client.KindPrimaryError:
		fmt.Println("the primary refused:", apiErr.SQLState, apiErr.Message)
	case errors.As(err, &apiErr) && apiErr.Kind == client.KindOutcomeUnknown:
		fmt.Println("sent without a reply: it may have run")
	default:
		fmt.Println("no channel:", err)
	}
}

// The daemon's channel state.
func ExampleClient_Status() {
	c := client.New("/run/standbyd/standbyd.sock")
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(st.State, st.ReadySessions)
}

// Many goroutines calling through one Client: the fast path carries them
// all on one connection, and each gets its own reply.
func ExampleClient_Call_concurrent() {
	c := client.New("/run/standbyd/standbyd.sock") // client.WithHTTP() for HTTP
	defer c.Close()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			reply, err := c.Call(ctx, "echo", []byte(fmt.Sprint(i)))
			if err != nil {
				fmt.Println(i, err)
				return
			}
			_ = reply
		}()
	}
	wg.Wait()
}
