package voice

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/warning"
)

// DefaultKeep is how long a call's record stays after the call was
// placed: longer than the day a provider keeps pushing a callback nobody
// took.
const DefaultKeep = 48 * time.Hour

// Calls keeps, for one cloud provider, what its callbacks need to know of
// each call the gateway placed: the delivery it is for, the line it holds,
// the keys pressed so far, and whether it confirmed or ended. Callbacks may
// reach any process, and a provider pushes again what was not taken, so the
// record is in Redis. A call is marked confirmed, or ended, only once the
// sink took its key press "1", or its report: a push that did not get that
// far, pushed again, confirms or reports.
type Calls struct {
	rdb      redis.UniversalClient
	prefix   string
	provider string
	keep     time.Duration
}

// NewCalls returns the call records of provider (e.g. "aliyun_voice")
// under Redis keys starting with prefix, each kept for keep (zero means
// DefaultKeep).
func NewCalls(rdb redis.UniversalClient, prefix, provider string, keep time.Duration) *Calls {
	if keep == 0 {
		keep = DefaultKeep
	}
	return &Calls{rdb: rdb, prefix: prefix, provider: provider, keep: keep}
}

// Record is what the gateway knows of one call it placed.
type Record struct {
	// CallID is the provider's id of the call.
	CallID string
	// Ref is the delivery the call is for.
	Ref warning.Ref
	// Lease is the line the call holds, and the number called.
	Lease Lease
	// Placed is when the provider took the call.
	Placed time.Time
	// Keys are the keys pressed so far, in order.
	Keys string
	// Confirmed says a key press "1" of the call was taken by the sink
	// (MarkConfirmed).
	Confirmed bool
	// Ended says the call's end was reported to the sink (MarkEnded).
	Ended bool
}

func (c *Calls) key(callID string) string {
	return c.prefix + ":{voice}:call:" + c.provider + ":" + callID
}

// Put keeps a call just placed.
func (c *Calls) Put(ctx context.Context, r Record) error {
	k := c.key(r.CallID)
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "ref", r.Ref.String(), "account", r.Lease.Account, "phone", r.Lease.Phone,
			"lease", r.Lease.ID, "placed", r.Placed.UnixMilli())
		p.Expire(ctx, k, c.keep)
		return nil
	})
	if err != nil {
		return fmt.Errorf("voice: keep call %s: %w", r.CallID, err)
	}
	return nil
}

// ErrUnknownCall is Get's error for a call id the gateway did not place, or
// placed so long ago that its record is gone.
var ErrUnknownCall = errors.New("unknown call")

// Get returns the record of a call.
func (c *Calls) Get(ctx context.Context, callID string) (Record, error) {
	m, err := c.rdb.HGetAll(ctx, c.key(callID)).Result()
	if err != nil {
		return Record{}, fmt.Errorf("voice: read call %s: %w", callID, err)
	}
	return decode(callID, m)
}

// FindWait is how long Find waits for a call it does not know yet.
const FindWait = 2 * time.Second

// Find returns the record of a call, waiting up to FindWait for one it
// does not know yet: a provider may push a call's first event before the
// process that placed it has kept it (the API's answer is still on its
// way). A call still unknown then is ErrUnknownCall.
func (c *Calls) Find(ctx context.Context, callID string) (Record, error) {
	deadline := time.Now().Add(FindWait)
	for {
		r, err := c.Get(ctx, callID)
		if !errors.Is(err, ErrUnknownCall) || time.Now().After(deadline) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func decode(callID string, m map[string]string) (Record, error) {
	if m["ref"] == "" {
		return Record{}, ErrUnknownCall
	}
	ref, err := warning.ParseRef(m["ref"])
	if err != nil {
		return Record{}, fmt.Errorf("voice: call %s: %w", callID, err)
	}
	ms, _ := strconv.ParseInt(m["placed"], 10, 64)
	return Record{
		CallID: callID, Ref: ref,
		Lease:  Lease{Account: m["account"], Phone: m["phone"], ID: m["lease"]},
		Placed: time.UnixMilli(ms), Keys: m["keys"],
		Confirmed: m["confirmed"] == "1", Ended: m["ended"] == "1",
	}, nil
}

// The gateway answers a provider's push only once what it carries is
// recorded, and the provider pushes again what it was not answered. So a
// call is marked confirmed (MarkConfirmed) or ended (MarkEnded) only after
// the sink took the confirmation or the report, never before: a push that
// failed half-way (Redis or the sink did not answer, the provider gave the
// push up, the process died) leaves the call unmarked, and the same push
// made again does what the first did not. The sink takes a confirmation or
// a report twice as once (channels.Confirmer, ledger.RecordCalls), so two
// pushes of the same event racing each other are harmless too.

// pressScript adds a key press to a call, once per event: an event seen
// before adds nothing. A "1" asks for a confirmation while the call is not
// marked confirmed, be its event new or seen before. KEYS: call. ARGV:
// key, event id. Returns {ok, fresh, confirm, field, value, ...}: ok 0 for
// an unknown call; then the call's record, read in the same step so that
// no second read can fail after the change was made.
var pressScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return {0, 0, 0} end
local fresh = 1
if ARGV[2] ~= "" and redis.call("HSETNX", KEYS[1], "ev:" .. ARGV[2], "1") == 0 then fresh = 0 end
if fresh == 1 then
  redis.call("HSET", KEYS[1], "keys", (redis.call("HGET", KEYS[1], "keys") or "") .. ARGV[1])
end
local confirm = 0
if ARGV[1] == "1" and redis.call("HEXISTS", KEYS[1], "confirmed") == 0 then confirm = 1 end
local out = {1, fresh, confirm}
for _, v in ipairs(redis.call("HGETALL", KEYS[1])) do out[#out+1] = v end
return out
`)

// Press is what Calls.Press came to.
type Press struct {
	// Record is the call, with the key added.
	Record Record
	// Replayed says the same event was taken before: its key was not
	// added again.
	Replayed bool
	// Confirm says the key is a "1" and the call is not marked confirmed
	// yet: the caller must confirm, then MarkConfirmed.
	Confirm bool
}

// Press records key pressed during call callID. event names the key press
// as the provider does (its time and key), so that a push made again adds
// nothing; empty when the provider names none. A "1" asks for a
// confirmation until MarkConfirmed, a replay included: the replay of a
// push whose confirmation did not complete must confirm. An unknown call
// is ErrUnknownCall.
func (c *Calls) Press(ctx context.Context, callID, key, event string) (Press, error) {
	res, err := pressScript.Run(ctx, c.rdb, []string{c.key(callID)}, key, event).Slice()
	if err != nil {
		return Press{}, fmt.Errorf("voice: key press on call %s: %w", callID, err)
	}
	if len(res) < 3 || res[0] != int64(1) {
		return Press{}, ErrUnknownCall
	}
	m := make(map[string]string, (len(res)-3)/2)
	for i := 3; i+1 < len(res); i += 2 {
		f, _ := res[i].(string)
		v, _ := res[i+1].(string)
		m[f] = v
	}
	rec, err := decode(callID, m)
	if err != nil {
		return Press{}, err
	}
	return Press{Record: rec, Replayed: res[1] == int64(0), Confirm: res[2] == int64(1)}, nil
}

// markScript sets a flag of a call's record, unless the record is gone (it
// is not made again, without its expiry). KEYS: call. ARGV: field.
var markScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then redis.call("HSET", KEYS[1], ARGV[1], "1") end
return 1
`)

// MarkConfirmed marks a call confirmed once the sink took its "1" (or
// refused it for good): later key presses, and pushes of it made again,
// confirm no more, and the call's report says it was confirmed.
func (c *Calls) MarkConfirmed(ctx context.Context, callID string) error {
	if err := markScript.Run(ctx, c.rdb, []string{c.key(callID)}, "confirmed").Err(); err != nil {
		return fmt.Errorf("voice: mark call %s confirmed: %w", callID, err)
	}
	return nil
}

// MarkEnded marks a call ended once the sink took its report: its end,
// pushed again, is not reported again. Until then a call's record says it
// has not ended (Record.Ended), and each push of its end reports it.
func (c *Calls) MarkEnded(ctx context.Context, callID string) error {
	if err := markScript.Run(ctx, c.rdb, []string{c.key(callID)}, "ended").Err(); err != nil {
		return fmt.Errorf("voice: mark call %s ended: %w", callID, err)
	}
	return nil
}

// MarkTimeout bounds what follows the sink's taking a push: marking the
// call, releasing its line.
const MarkTimeout = 2 * time.Second

// AfterSink returns the context for what follows once the sink took what a
// push carries: not cancelled with the push's request, which the provider
// may have given up meanwhile (the sink has it, the call must say so), and
// bounded by MarkTimeout.
func AfterSink(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), MarkTimeout)
}

// From is what an audit entry names as where a confirmation came from:
// the masked number, the provider and its call id.
func From(provider, maskedPhone, callID string) string {
	return strings.TrimSpace(maskedPhone + " " + provider + " " + callID)
}

// InvalidNumber is the reason of the receipt of a recipient whose address
// is not a mainland mobile number: nobody is called.
const InvalidNumber = "invalid number: want a mainland mobile number, 11 digits starting with 1"
