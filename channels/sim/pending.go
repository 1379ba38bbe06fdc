package sim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// A simulator on Redis keeps its pending delivery reports there: each
// accepted batch's reports in a key of their own, and the keys' ids in a
// sorted set scored by when the reports are due (unix ms). Every
// simulator's pump takes the due ids, marks them taken by moving their score
// reportLease ahead, sends the reports, and removes both; one that dies
// before removing them leaves them due again after the lease, for whichever
// pump looks next. A report sent twice is a duplicate, which the gateway's
// ledger ignores.

// reportLease is how long a pump has to send the reports it took.
const reportLease = 30 * time.Second

// pumpBatch is how many batches' reports a pump takes at once.
const pumpBatch = 64

// pumpPosts bounds the report requests a pump has open at once.
const pumpPosts = 32

// pumpIdle is the longest a pump waits between looks. Its own reports wake
// it, and those another pump took and left are due when their lease ends,
// which the look sees: what it waits for is only reports queued by another
// simulator that died before its pump took them.
const pumpIdle = 5 * time.Second

// claimScript takes the ids due at now for lease and returns them, and
// last the score of the earliest id left ("" when none).
// KEYS: reports. ARGV: now ms, lease ms, limit.
var claimScript = redis.NewScript(`
local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call("ZADD", KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), m) end
local nxt = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
due[#due+1] = nxt[2] or ""
return due
`)

func (p *Provider) reportsKey() string { return p.cfg.Prefix + ":reports" }

func (p *Provider) reportKey(id string) string { return p.cfg.Prefix + ":report:" + id }

// queueAt adds reports to Redis through pl, due at due.
func (p *Provider) queueAt(ctx context.Context, pl redis.Pipeliner, reports []wireReport, due time.Time) {
	for i := range reports {
		reports[i].At = due.UnixMilli()
	}
	var b [8]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	pl.Set(ctx, p.reportKey(id), encodeReports(reports), AcceptedTTL)
	pl.ZAdd(ctx, p.reportsKey(), redis.Z{Score: float64(due.UnixMilli()), Member: id})
}

// pump sends due reports until Close: at once when woken or when more are
// due, else when the next is due, and at least every pumpIdle to find those
// other simulators left.
func (p *Provider) pump() {
	defer close(p.pumpDone)
	sem := make(chan struct{}, pumpPosts)
	for {
		wait := pumpIdle
		now := time.Now()
		res, err := claimScript.Run(context.Background(), p.cfg.Redis, []string{p.reportsKey()}, now.UnixMilli(), reportLease.Milliseconds(), pumpBatch).StringSlice()
		if err != nil {
			p.log.Warn("sim: pending reports not read", "err", err)
		} else {
			members, next := res[:len(res)-1], res[len(res)-1]
			for _, m := range members {
				sem <- struct{}{}
				p.posting.Add(1)
				go func() {
					defer func() { <-sem; p.posting.Done() }()
					p.sendPending(m)
				}()
			}
			if len(members) == pumpBatch {
				wait = 0
			} else if ms, err := strconv.ParseFloat(next, 64); err == nil {
				wait = min(wait, time.Until(time.UnixMilli(int64(ms))))
			}
		}
		if wait <= 0 {
			select {
			case <-p.stopPump:
				return
			default:
				continue
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-p.stopPump:
			t.Stop()
			return
		case <-p.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// sendPending posts one batch's reports and, once the gateway took them,
// removes them; otherwise they are due again after the lease.
func (p *Provider) sendPending(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, err := p.cfg.Redis.Get(ctx, p.reportKey(id)).Bytes()
	if err == redis.Nil {
		p.cfg.Redis.ZRem(ctx, p.reportsKey(), id) // sent by another pump meanwhile
		return
	}
	if err != nil {
		p.log.Warn("sim: pending reports not read", "err", err)
		return
	}
	if !p.send(body, bytes.Count(body, []byte("\n"))) {
		return
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.cfg.Redis.TxPipelined(ctx, func(pl redis.Pipeliner) error {
		pl.ZRem(ctx, p.reportsKey(), id)
		pl.Del(ctx, p.reportKey(id))
		return nil
	}); err != nil {
		p.log.Warn("sim: sent reports not removed; they will be sent again", "err", err)
	}
}
