package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Calls (电话叫应): the officials of audiences the policy calls have a
// call schedule, one hash per warning:
//
//	person id → "<calls placed>|<ms b36>"
//
// where the time is of the last call, or of the message while no call was
// placed. The 叫应 checks place the calls that are due and claim each in
// the hash first, so that two checks never call an official twice.

func (l *Ledger) callTracksKey(id string) string { return l.prefix + ":{" + id + "}:vc" }

// CallTrack is where an official's call schedule stands.
type CallTrack struct {
	// Calls is how many calls were placed to them.
	Calls int
	// At is when the last call was placed, or when the message went while
	// none was.
	At time.Time
}

func (t CallTrack) encode() string { return strconv.Itoa(t.Calls) + "|" + ms36(t.At) }

func decodeTrack(v string) (CallTrack, bool) {
	n, at, ok := strings.Cut(v, "|")
	if !ok {
		return CallTrack{}, false
	}
	c, err1 := strconv.Atoi(n)
	t, err2 := strconv.ParseInt(at, 36, 64)
	if err1 != nil || err2 != nil {
		return CallTrack{}, false
	}
	return CallTrack{Calls: c, At: time.UnixMilli(t)}, true
}

// RegisterCalls starts the call schedules of officials not yet on one; an
// official already on one is left as they are, so a plan that runs twice
// calls nobody twice.
func (l *Ledger) RegisterCalls(ctx context.Context, warningID string, tracks map[string]CallTrack) error {
	if len(tracks) == 0 {
		return nil
	}
	pipe := l.rdb.Pipeline()
	for id, t := range tracks {
		pipe.HSetNX(ctx, l.callTracksKey(warningID), id, t.encode())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ledger: register calls of %s: %w", warningID, err)
	}
	return nil
}

// CallTracks returns the call schedules of a warning's officials, by person id.
func (l *Ledger) CallTracks(ctx context.Context, warningID string) (map[string]CallTrack, error) {
	m, err := l.rdb.HGetAll(ctx, l.callTracksKey(warningID)).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: calls of %s: %w", warningID, err)
	}
	out := make(map[string]CallTrack, len(m))
	for id, v := range m {
		if t, ok := decodeTrack(v); ok {
			out[id] = t
		}
	}
	return out, nil
}

// CallClaim moves one official's call schedule on: from Read, as the
// caller read it, to Next.
type CallClaim struct {
	PersonID   string
	Read, Next CallTrack
}

// claimCallsScript sets each schedule to its next value when it is still
// as read. KEYS: tracks. ARGV: (id, read, next) per claim. Returns 1 or 0
// per claim.
var claimCallsScript = redis.NewScript(`
local out = {}
for i = 1, #ARGV, 3 do
  if redis.call("HGET", KEYS[1], ARGV[i]) == ARGV[i+1] then
    redis.call("HSET", KEYS[1], ARGV[i], ARGV[i+2])
    out[#out+1] = 1
  else
    out[#out+1] = 0
  end
end
return out
`)

// ClaimCalls claims the calls of a check: each official's schedule moves
// on only when it is still as the check read it, so of two checks that
// read the same, one calls. It reports per claim whether it was made.
func (l *Ledger) ClaimCalls(ctx context.Context, warningID string, claims []CallClaim) ([]bool, error) {
	out := make([]bool, 0, len(claims))
	for len(claims) > 0 {
		part := claims[:min(triesPerCall, len(claims))]
		claims = claims[len(part):]
		args := make([]any, 0, 3*len(part))
		for _, c := range part {
			args = append(args, c.PersonID, c.Read.encode(), c.Next.encode())
		}
		res, err := claimCallsScript.Run(ctx, l.rdb, []string{l.callTracksKey(warningID)}, args...).Int64Slice()
		if err != nil && !errors.Is(err, redis.Nil) {
			return out, fmt.Errorf("ledger: claim calls of %s: %w", warningID, err)
		}
		for _, v := range res {
			out = append(out, v == 1)
		}
	}
	return out, nil
}
