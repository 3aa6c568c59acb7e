// Package docclaims holds the test that keeps the docs and the tests one to
// one. A behavioural statement in README.md or docs/{liveness,api,extension,
// protocol}.md carries a claim id in an HTML comment, invisible when
// rendered:
//
//	<!-- claim: liveness.backoff-upper-half -->
//
// and the test that provokes it names the same id in a comment:
//
//	// claim: liveness.backoff-upper-half
//
// go test ./internal/docclaims fails when a claim has no test naming it, or
// when a test names a claim that no doc makes.
package docclaims
