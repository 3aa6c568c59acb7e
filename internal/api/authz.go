package api

import (
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/standbyd/standbyd/internal/protocol"
)

// AllowRule lets the named users and groups call the named ops (built-in
// names, numbers, or names of handlers registered on the primary). The names
// were resolved to ids when the configuration was loaded.
type AllowRule struct {
	Ops  []string
	UIDs []uint32
	GIDs []uint32
}

// Policy is the per-op allow-list (api.allow): an op named by a rule may
// be called only by a caller that a rule naming it lets in; an op named by
// no rule by anyone who can open the socket. The zero Policy allows all.
type Policy struct {
	Rules []AllowRule
	// groupsOf lists a uid's groups (its user's supplementary groups);
	// replaced in tests.
	groupsOf func(uid uint32) []uint32
}

// allowed checks a call against api.allow. The primary's op list (from
// Status, which copies the whole status) is read only when there are
// rules: without them every call is allowed.
func (s *Server) allowed(op uint16, peer Peer) decision {
	if s.cfg.Allow == nil || len(s.cfg.Allow.Rules) == 0 {
		return decision{allowed: true}
	}
	return s.cfg.Allow.check(op, s.ch.Status().Hello.Ops, peer)
}

// decision is what the policy says about one call.
type decision struct {
	restricted bool
	allowed    bool
}

// check decides whether peer may call op. offered is the primary's hello,
// which gives handler names their codes. A handler name that the hello does
// not resolve may be a handler registered since: it then restricts every
// user op the hello does not know, so that calling it by number does not
// get round the rule.
func (p *Policy) check(op uint16, offered []protocol.OpInfo, peer Peer) decision {
	if p == nil || len(p.Rules) == 0 {
		return decision{allowed: true}
	}
	unknownUserOp := op >= protocol.FirstUserOp && !slices.ContainsFunc(offered, func(o protocol.OpInfo) bool { return o.Op == op })
	var d decision
	for _, r := range p.Rules {
		if !r.applies(op, offered, unknownUserOp) {
			continue
		}
		d.restricted = true
		if p.admits(r, peer) {
			d.allowed = true
			return d
		}
	}
	if !d.restricted {
		d.allowed = true
	}
	return d
}

func (r AllowRule) applies(op uint16, offered []protocol.OpInfo, unknownUserOp bool) bool {
	for _, ref := range r.Ops {
		if code, err := protocol.ParseOp(ref); err == nil {
			if code == op {
				return true
			}
			continue
		}
		i := slices.IndexFunc(offered, func(o protocol.OpInfo) bool { return !o.Builtin && o.Name == ref })
		if i >= 0 && offered[i].Op == op || i < 0 && unknownUserOp {
			return true
		}
	}
	return false
}

func (p *Policy) admits(r AllowRule, peer Peer) bool {
	if !peer.Known {
		return false
	}
	if slices.Contains(r.UIDs, peer.UID) || slices.Contains(r.GIDs, peer.GID) {
		return true
	}
	if len(r.GIDs) == 0 {
		return false
	}
	groupsOf := p.groupsOf
	if groupsOf == nil {
		groupsOf = userGroups
	}
	for _, g := range groupsOf(peer.UID) {
		if slices.Contains(r.GIDs, g) {
			return true
		}
	}
	return false
}

// userGroups is the uid's groups from the user database (SO_PEERCRED gives
// only the effective gid). Read at each restricted call, so that a change
// of membership applies without a restart.
func userGroups(uid uint32) []uint32 {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil
	}
	var out []uint32
	for _, s := range ids {
		if g, err := strconv.ParseUint(s, 10, 32); err == nil {
			out = append(out, uint32(g))
		}
	}
	return out
}

// deniedMessage says who was refused what, without the payload.
func deniedMessage(name string, peer Peer) string {
	return fmt.Sprintf("op %s is restricted by api.allow and %s is not allowed to call it", strings.TrimSpace(name), peer)
}
