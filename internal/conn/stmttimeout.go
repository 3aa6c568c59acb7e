package conn

import (
	"context"
	"fmt"
	"time"
)

// StatementTimeoutFor is the statement_timeout a session sets when
// standbyd waits replyTimeout for a reply: a margin below it (a fifth, at
// least 250ms, at most half), so that the primary cancels a slow handler
// and answers with a clean error before the daemon stops waiting.
func StatementTimeoutFor(replyTimeout time.Duration) time.Duration {
	margin := max(replyTimeout/5, 250*time.Millisecond)
	if margin > replyTimeout/2 {
		margin = replyTimeout / 2
	}
	return max(replyTimeout-margin, time.Millisecond).Round(time.Millisecond)
}

// capStatementTimeout lowers statement_timeout to d for this session unless
// the role or database already set a shorter one (a DBA's tighter limit
// stays). Run before CALL: inside the channel no SQL can be sent.
func (s *Session) capStatementTimeout(ctx context.Context, d time.Duration) error {
	ms := d.Milliseconds()
	q := fmt.Sprintf("SELECT set_config('statement_timeout', '%d', false) FROM pg_settings"+
		" WHERE name = 'statement_timeout' AND (setting::bigint = 0 OR setting::bigint > %d)", ms, ms)
	if _, err := s.pc.Exec(ctx, q).ReadAll(); err != nil {
		return fmt.Errorf("setting statement_timeout to %dms: %w", ms, err)
	}
	return nil
}
