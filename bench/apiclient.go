package main

import "github.com/standbyd/standbyd/client"

// newHTTPClient is the Go client held to the HTTP API, for the api-http
// contender. The client has one transport, HTTP, so it is client.New; once it
// offers a faster default, this is where the option that keeps HTTP goes.
func newHTTPClient(socket string) *client.Client { return client.New(socket) }
