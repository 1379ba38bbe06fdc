// Package voice is what the voice adapters (channels/sipvoice,
// channels/aliyunvoice, channels/tencentvoice) share: the phone lines of
// each provider account, counted in Redis across every worker process; the
// record of each call a cloud provider places, which its callbacks find
// from any process; and placing a batch's calls as lines come free. It
// knows no queue, no ledger and no policy.
package voice

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lines counts the phone lines of provider accounts — a SIP trunk's
// channels, a cloud account's concurrent calls — for every process that
// places calls, through Redis. A call holds a line by a lease that ends
// when the call is released or when the lease's time runs out, so that a
// process that dies in a call frees its lines by itself. A lease also
// holds the number called: the same phone is never called twice at once,
// on the same account or another one (a provider failing over to the next
// account, two warnings at once).
//
// Times are the Lines' clock, not Redis's: every process placing calls
// must keep time (NTP), as a lease ends by the clock of whoever looks.
type Lines struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewLines returns the lines kept under Redis keys starting with prefix
// (the gateway's redis.prefix). now is the clock; nil means time.Now.
func NewLines(rdb redis.UniversalClient, prefix string, now func() time.Time) *Lines {
	if now == nil {
		now = time.Now
	}
	return &Lines{rdb: rdb, prefix: prefix, now: now}
}

// Lease is one line held for one call.
type Lease struct {
	// Account names the provider account whose line it is.
	Account string
	// Phone is the number called, 11 digits.
	Phone string
	// ID is the lease's own random id, unique for every call; cloud
	// adapters send it with the call (Alibaba's OutId, Tencent's
	// SessionContext) and check that callbacks bring it back.
	ID string
}

// The keys share one hash tag, so that a script may touch them together
// on Redis Cluster.
func (l *Lines) linesKey(account string) string { return l.prefix + ":{voice}:lines:" + account }
func (l *Lines) phoneKey(phone string) string   { return l.prefix + ":{voice}:phone:" + phone }

// Taken is what TryAcquire came to.
type Taken int

// What TryAcquire came to.
const (
	// Got: the lease is the caller's.
	Got Taken = iota
	// LinesFull: every line of the account is in a call.
	LinesFull
	// PhoneBusy: the number is in a call already, on some account.
	PhoneBusy
)

// acquireScript takes a line and the phone when both are free. Expired
// leases are dropped first; a phone's lease is "id|expiry" and counts only
// until its expiry. KEYS: lines, phone. ARGV: now ms, lines, id, expiry ms,
// key TTL ms.
var acquireScript = redis.NewScript(`
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])
local held = redis.call("GET", KEYS[2])
if held then
  local exp = tonumber(string.match(held, "|(%d+)$") or "0")
  if exp > tonumber(ARGV[1]) then return 2 end
end
if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
redis.call("ZADD", KEYS[1], ARGV[4], ARGV[3])
redis.call("SET", KEYS[2], ARGV[3] .. "|" .. ARGV[4], "PX", ARGV[5])
if redis.call("PTTL", KEYS[1]) < tonumber(ARGV[5]) then
  redis.call("PEXPIRE", KEYS[1], ARGV[5])
end
return 0
`)

// extendScript moves a lease's end, if the lease is still held. KEYS:
// lines, phone. ARGV: id, expiry ms, key TTL ms.
var extendScript = redis.NewScript(`
if not redis.call("ZSCORE", KEYS[1], ARGV[1]) then return 0 end
redis.call("ZADD", KEYS[1], "XX", ARGV[2], ARGV[1])
local held = redis.call("GET", KEYS[2])
if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. "|" then
  redis.call("SET", KEYS[2], ARGV[1] .. "|" .. ARGV[2], "PX", ARGV[3])
end
if redis.call("PTTL", KEYS[1]) < tonumber(ARGV[3]) then
  redis.call("PEXPIRE", KEYS[1], ARGV[3])
end
return 1
`)

// releaseScript frees a lease's line and, when it still holds it, its
// phone. KEYS: lines, phone. ARGV: id.
var releaseScript = redis.NewScript(`
local n = redis.call("ZREM", KEYS[1], ARGV[1])
local held = redis.call("GET", KEYS[2])
if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. "|" then
  redis.call("DEL", KEYS[2])
end
return n
`)

// keyTTL keeps a lease's keys a while past its end, so that Redis drops
// them by itself once nobody looks.
func keyTTL(ttl time.Duration) int64 { return (ttl + time.Minute).Milliseconds() }

// TryAcquire takes one of account's n lines to call phone, for ttl, when a
// line is free and the phone is not in a call; it never waits.
func (l *Lines) TryAcquire(ctx context.Context, account string, n int, phone string, ttl time.Duration) (Lease, Taken, error) {
	if n < 1 {
		return Lease{}, LinesFull, fmt.Errorf("voice: account %s has no lines", account)
	}
	lease := Lease{Account: account, Phone: phone, ID: NewID()}
	now := l.now()
	res, err := acquireScript.Run(ctx, l.rdb, []string{l.linesKey(account), l.phoneKey(phone)},
		now.UnixMilli(), n, lease.ID, now.Add(ttl).UnixMilli(), keyTTL(ttl)).Int()
	if err != nil {
		return Lease{}, LinesFull, fmt.Errorf("voice: take a line of %s: %w", account, err)
	}
	switch res {
	case 0:
		return lease, Got, nil
	case 2:
		return Lease{}, PhoneBusy, nil
	}
	return Lease{}, LinesFull, nil
}

// Extend makes the lease last ttl from now, as a call still going needs;
// it reports false when the lease had run out and its line was let go.
func (l *Lines) Extend(ctx context.Context, lease Lease, ttl time.Duration) (bool, error) {
	n, err := extendScript.Run(ctx, l.rdb, []string{l.linesKey(lease.Account), l.phoneKey(lease.Phone)},
		lease.ID, l.now().Add(ttl).UnixMilli(), keyTTL(ttl)).Int()
	if err != nil {
		return false, fmt.Errorf("voice: extend a line of %s: %w", lease.Account, err)
	}
	return n == 1, nil
}

// Release frees the lease's line and phone. Releasing a lease that was
// released already, or that ran out, is harmless.
func (l *Lines) Release(ctx context.Context, lease Lease) error {
	if lease.ID == "" {
		return nil
	}
	err := releaseScript.Run(ctx, l.rdb, []string{l.linesKey(lease.Account), l.phoneKey(lease.Phone)}, lease.ID).Err()
	if err != nil {
		return fmt.Errorf("voice: release a line of %s: %w", lease.Account, err)
	}
	return nil
}

// InUse returns how many of account's lines are in calls now.
func (l *Lines) InUse(ctx context.Context, account string) (int, error) {
	n, err := l.rdb.ZCount(ctx, l.linesKey(account), "("+strconv.FormatInt(l.now().UnixMilli(), 10), "+inf").Result()
	if err != nil {
		return 0, fmt.Errorf("voice: lines of %s: %w", account, err)
	}
	return int(n), nil
}

// NewID returns a random id of 12 hex digits: short enough for Alibaba's
// OutId (15 bytes at most), long enough never to repeat among the calls
// of a day.
func NewID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ErrNoLine is the cause of a batch whose calls did not all find a free
// line before the batch's time ran out.
var ErrNoLine = errors.New("no free line")
