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
// record is in Redis and its changes are made once: the first key press
// "1" of a call confirms, the first report of its end releases its line.
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
	// Confirmed says a key press "1" of the call was taken.
	Confirmed bool
	// Ended says the call's end was reported.
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

// pressScript adds a key press to a call, once per event: an event seen
// before changes nothing. A "1" claims the confirmation unless a "1" of
// the call did already. KEYS: call. ARGV: key, event id.
// Returns {ok, fresh, claimed}: ok 0 for an unknown call.
var pressScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return {0, 0, 0} end
if ARGV[2] ~= "" then
  if redis.call("HSETNX", KEYS[1], "ev:" .. ARGV[2], "1") == 0 then return {1, 0, 0} end
end
redis.call("HSET", KEYS[1], "keys", (redis.call("HGET", KEYS[1], "keys") or "") .. ARGV[1])
if ARGV[1] == "1" and redis.call("HSETNX", KEYS[1], "confirmed", "1") == 1 then return {1, 1, 1} end
return {1, 1, 0}
`)

// Press is what Calls.Press came to.
type Press struct {
	// Record is the call, with the key added.
	Record Record
	// Replayed says the same event was taken before: nothing changed.
	Replayed bool
	// Confirm says this is the call's first "1": the caller must confirm,
	// and Unclaim when confirming fails for now.
	Confirm bool
}

// Press records key pressed during call callID. event names the key press
// as the provider does (its time and key), so that a push made again adds
// nothing; empty when the provider names none. The call's first "1" is
// claimed for confirmation: a second "1" (pressed again, or a replay) is
// not. An unknown call is ErrUnknownCall.
func (c *Calls) Press(ctx context.Context, callID, key, event string) (Press, error) {
	k := c.key(callID)
	res, err := pressScript.Run(ctx, c.rdb, []string{k}, key, event).Int64Slice()
	if err != nil {
		return Press{}, fmt.Errorf("voice: key press on call %s: %w", callID, err)
	}
	if res[0] == 0 {
		return Press{}, ErrUnknownCall
	}
	rec, err := c.Get(ctx, callID)
	if err != nil {
		return Press{}, err
	}
	return Press{Record: rec, Replayed: res[1] == 0, Confirm: res[2] == 1}, nil
}

// Unclaim gives a call's confirmation back after confirming failed for
// now, so that the provider's next push of the key press confirms; the
// event is forgotten too, or that push would count as a replay.
func (c *Calls) Unclaim(ctx context.Context, callID, event string) error {
	fields := []string{"confirmed"}
	if event != "" {
		fields = append(fields, "ev:"+event)
	}
	if err := c.rdb.HDel(ctx, c.key(callID), fields...).Err(); err != nil {
		return fmt.Errorf("voice: unclaim call %s: %w", callID, err)
	}
	return nil
}

// endScript marks a call ended, once. KEYS: call. Returns 0 for an unknown
// call, 1 when this marked it, 2 when it had ended before.
var endScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
if redis.call("HSETNX", KEYS[1], "ended", "1") == 0 then return 2 end
return 1
`)

// End marks call callID ended and returns its record; first says this is
// the first report of its end. An unknown call is ErrUnknownCall.
func (c *Calls) End(ctx context.Context, callID string) (rec Record, first bool, err error) {
	n, err := endScript.Run(ctx, c.rdb, []string{c.key(callID)}).Int()
	if err != nil {
		return Record{}, false, fmt.Errorf("voice: end call %s: %w", callID, err)
	}
	if n == 0 {
		return Record{}, false, ErrUnknownCall
	}
	rec, err = c.Get(ctx, callID)
	return rec, n == 1, err
}

// Unend takes a call's end back after recording it failed, so that the
// provider's next push records it.
func (c *Calls) Unend(ctx context.Context, callID string) error {
	if err := c.rdb.HDel(ctx, c.key(callID), "ended").Err(); err != nil {
		return fmt.Errorf("voice: unend call %s: %w", callID, err)
	}
	return nil
}

// From is what an audit entry names as where a confirmation came from:
// the masked number, the provider and its call id.
func From(provider, maskedPhone, callID string) string {
	return strings.TrimSpace(maskedPhone + " " + provider + " " + callID)
}

// InvalidNumber is the reason of the receipt of a recipient whose address
// is not a mainland mobile number: nobody is called.
const InvalidNumber = "invalid number: want a mainland mobile number, 11 digits starting with 1"
