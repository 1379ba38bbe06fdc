package roster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/region"
)

// Options configure a Store.
type Options struct {
	// Prefix starts every key, as the ledger's do. Default "wg".
	Prefix string
	Tree   *region.Tree
	// Base is served as version 0 while no roster was ever stored: the
	// generated demo roster, which costs no memory per resident. It is
	// never written to Redis; the first change writes it whole with the
	// change applied. Nil means an empty roster.
	Base region.Roster
	Log  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// KeepLast is how many of the newest versions are kept besides the
	// current one and those warnings keep. Default 5.
	KeepLast int
	// Cached is how many versions besides the current one a process keeps
	// in memory for live warnings planned with them. Default 4.
	Cached int
}

// Store serves roster versions from Redis. It is safe for concurrent use;
// every process has its own, and they meet in Redis.
type Store struct {
	rdb  redis.UniversalClient
	opt  Options
	tree *region.Tree
	log  *slog.Logger
	now  func() time.Time

	current atomic.Pointer[version] // the newest version this process knows

	mu       sync.Mutex          // guards cached and chunks, and serialises loads
	cached   map[int64]*version  // older versions, for warnings planned with them
	lastUsed map[int64]time.Time // of cached versions
	chunks   map[string]*chunk   // parsed chunks, shared by versions
	base     *version            // version 0, materialised on first change
	baseOnce sync.Once
}

// New returns a store. It serves version 0 (Options.Base) until it has
// read the current version: call Current or Watch.
func New(rdb redis.UniversalClient, o Options) *Store {
	if o.Prefix == "" {
		o.Prefix = "wg"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.KeepLast <= 0 {
		o.KeepLast = 5
	}
	if o.Cached <= 0 {
		o.Cached = 4
	}
	s := &Store{rdb: rdb, opt: o, tree: o.Tree, log: o.Log, now: o.Now,
		cached: map[int64]*version{}, lastUsed: map[int64]time.Time{}, chunks: map[string]*chunk{}}
	var none [3][]*chunk
	for k := range none {
		none[k] = make([]*chunk, o.Tree.Len())
	}
	s.current.Store(newVersion(Info{}, o.Tree, none))
	return s
}

// Keys. The small keys of the roster's bookkeeping share a hash tag, so that
// the commit script may touch them together in a Redis Cluster; chunks are
// spread, as nothing touches two at once.
func (s *Store) key(name string) string     { return s.opt.Prefix + ":{roster}:" + name }
func (s *Store) currentKey() string         { return s.key("current") }
func (s *Store) manifestKey(n int64) string { return s.key("m:" + strconv.FormatInt(n, 10)) }
func (s *Store) versionsKey() string        { return s.key("versions") }
func (s *Store) pinsKey() string            { return s.key("pins") }
func (s *Store) chunksKey() string          { return s.key("chunks") }
func (s *Store) lockKey() string            { return s.key("lock") }
func (s *Store) chunkKey(id string) string  { return s.opt.Prefix + ":roster:c:" + id }
func field(k Kind, code string) string      { return string(k.tag()) + "|" + code }
func parseField(f string) (Kind, string, bool) {
	return kindOfTag(f), f[min(2, len(f)):], len(f) > 2 && f[1] == '|'
}
func kindOfTag(f string) Kind {
	if f == "" {
		return ""
	}
	for _, k := range Kinds {
		if f[0] == k.tag() {
			return k
		}
	}
	return ""
}

// ErrNoVersion is returned for a version that was never stored or has been
// deleted since (no live warning kept it).
var ErrNoVersion = errors.New("roster version not stored")

// Latest returns the newest version this process has loaded, without asking
// Redis: for lookups not tied to a warning (an SMS reply, region counts).
func (s *Store) Latest() (region.Roster, int64) {
	v := s.current.Load()
	if v.info.Number == 0 {
		return s.baseRoster(), 0
	}
	return v, v.info.Number
}

// Info describes the newest version this process has loaded; version 0
// counts the base roster.
func (s *Store) Info() Info {
	info := s.current.Load().info
	if info.Number == 0 && s.opt.Base != nil {
		root := s.tree.Root().Code
		c := s.opt.Base.Counts(root)
		info.People, info.Devices, info.Households = c.Officials+c.Residents, c.Loudspeakers+c.Screens, c.Households
	}
	return info
}

// baseRoster is version 0 as served: the configured base, or an empty roster.
func (s *Store) baseRoster() region.Roster {
	if s.opt.Base != nil {
		return s.opt.Base
	}
	return s.current.Load()
}

// Current asks Redis for the current version and returns it, loading it
// first if this process has not: a warning planned just after a change sees
// the change. It costs one GET when nothing changed.
func (s *Store) Current(ctx context.Context) (region.Roster, int64, error) {
	n, err := s.currentNumber(ctx)
	if err != nil {
		return nil, 0, err
	}
	v, err := s.advance(ctx, n)
	if err != nil {
		return nil, 0, err
	}
	if n == 0 {
		return s.baseRoster(), 0, nil
	}
	return v, n, nil
}

func (s *Store) currentNumber(ctx context.Context) (int64, error) {
	n, err := s.rdb.Get(ctx, s.currentKey()).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("roster: read current version: %w", err)
	}
	return n, nil
}

// advance makes version n this process's current one, loading it if need
// be. A version older than the one held is not gone back to.
func (s *Store) advance(ctx context.Context, n int64) (*version, error) {
	cur := s.current.Load()
	if cur.info.Number >= n {
		return cur, nil
	}
	v, err := s.load(ctx, n)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.current.Load(); old.info.Number < v.info.Number {
		if old.info.Number > 0 {
			s.cached[old.info.Number] = old
			s.lastUsed[old.info.Number] = s.now()
		}
		s.current.Store(v)
		s.trimLocked()
		s.log.Info("roster version loaded", "version", n, "people", v.info.People, "devices", v.info.Devices, "households", v.info.Households)
	}
	// Lookups by id are wanted soon (links, replies, escalation): build them
	// now rather than in the first request.
	go v.index()
	return s.current.Load(), nil
}

// At returns version n, from memory or from Redis; 0 is the base roster.
func (s *Store) At(ctx context.Context, n int64) (region.Roster, error) {
	if n == 0 {
		return s.baseRoster(), nil
	}
	if cur := s.current.Load(); cur.info.Number == n {
		return cur, nil
	}
	s.mu.Lock()
	if v, ok := s.cached[n]; ok {
		s.lastUsed[n] = s.now()
		s.mu.Unlock()
		return v, nil
	}
	s.mu.Unlock()
	v, err := s.load(ctx, n)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cached[n] = v
	s.lastUsed[n] = s.now()
	s.trimLocked()
	s.mu.Unlock()
	return v, nil
}

// trimLocked keeps at most Options.Cached older versions in memory, the most
// recently used, and drops the chunks no version in memory names.
func (s *Store) trimLocked() {
	for len(s.cached) > s.opt.Cached {
		var oldest int64
		var at time.Time
		for n, t := range s.lastUsed {
			if oldest == 0 || t.Before(at) {
				oldest, at = n, t
			}
		}
		delete(s.cached, oldest)
		delete(s.lastUsed, oldest)
	}
	used := map[string]bool{}
	mark := func(v *version) {
		for _, byDiv := range v.chunks {
			for _, c := range byDiv {
				if c != nil {
					used[c.id] = true
				}
			}
		}
	}
	mark(s.current.Load())
	for _, v := range s.cached {
		mark(v)
	}
	for id := range s.chunks {
		if !used[id] {
			delete(s.chunks, id)
		}
	}
}

// load reads version n: its manifest, then every chunk this process does
// not hold yet, pipelined.
func (s *Store) load(ctx context.Context, n int64) (*version, error) {
	fields, err := s.rdb.HGetAll(ctx, s.manifestKey(n)).Result()
	if err != nil {
		return nil, fmt.Errorf("roster: read version %d: %w", n, err)
	}
	if len(fields) == 0 {
		return nil, fmt.Errorf("roster version %d: %w", n, ErrNoVersion)
	}
	info := infoOf(n, fields)
	var chunks [3][]*chunk
	for k := range chunks {
		chunks[k] = make([]*chunk, s.tree.Len())
	}
	type want struct {
		kind Kind
		div  int
		id   string
	}
	var missing []want
	s.mu.Lock()
	for f, id := range fields {
		k, code, ok := parseField(f)
		if !ok || k == "" {
			continue
		}
		i, known := s.tree.Index(code)
		if !known {
			// A division the tree no longer has (a new regions file): its
			// rows cannot be reached, and the next change drops them.
			s.log.Warn("roster version names a division the region tree lacks", "version", n, "division", code)
			continue
		}
		if c, ok := s.chunks[id]; ok {
			chunks[k.index()][i] = c
		} else {
			missing = append(missing, want{k, i, id})
		}
	}
	s.mu.Unlock()
	for start := 0; start < len(missing); start += 256 {
		part := missing[start:min(start+256, len(missing))]
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(part))
		for j, w := range part {
			cmds[j] = pipe.Get(ctx, s.chunkKey(w.id))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("roster: read version %d: %w", n, err)
		}
		for j, w := range part {
			data, err := cmds[j].Result()
			if err != nil {
				return nil, fmt.Errorf("roster: version %d: chunk %s of %s %s: %w", n, w.id, w.kind, s.tree.ByIndex(w.div).Code, err)
			}
			c, err := parseChunk(w.id, w.kind, data)
			if err != nil {
				return nil, err
			}
			chunks[w.kind.index()][w.div] = c
		}
	}
	s.mu.Lock()
	for k := range chunks {
		for i, c := range chunks[k] {
			if c == nil {
				continue
			}
			if held, ok := s.chunks[c.id]; ok {
				chunks[k][i] = held
			} else {
				s.chunks[c.id] = c
			}
		}
	}
	s.mu.Unlock()
	return newVersion(info, s.tree, chunks), nil
}

func infoOf(n int64, fields map[string]string) Info {
	info := Info{Number: n, By: fields["#by"], Note: fields["#note"]}
	if ms, err := strconv.ParseInt(fields["#at"], 10, 64); err == nil {
		info.At = time.UnixMilli(ms)
	}
	return info
}

// Keep keeps version n stored until at least until: a warning planned with
// it looks people up in it until it expires and its report is read.
func (s *Store) Keep(ctx context.Context, n int64, until time.Time) error {
	if n == 0 {
		return nil
	}
	err := s.rdb.ZAddGT(ctx, s.pinsKey(), redis.Z{Score: float64(until.UnixMilli()), Member: strconv.FormatInt(n, 10)}).Err()
	if err != nil {
		return fmt.Errorf("roster: keep version %d: %w", n, err)
	}
	return nil
}

// Watch follows the current version until ctx ends: a poll of one key every
// interval (default 1s), then a load of what changed; and a sweep of
// versions nobody keeps, every sweep interval (default 10 minutes).
func (s *Store) Watch(ctx context.Context, interval, sweep time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	if sweep <= 0 {
		sweep = 10 * time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	lastSweep := s.now()
	for {
		if _, _, err := s.Current(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("roster: cannot follow the current version", "err", err)
		}
		if s.now().Sub(lastSweep) >= sweep {
			lastSweep = s.now()
			// A change being applied holds the lock: sweep next time.
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrBusy) {
				s.log.Warn("roster: sweep failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep deletes the versions nobody needs — not current, not among the
// newest KeepLast, not kept by a live warning — and then the chunks no
// remaining version names. It holds the lock changes hold, so that it never
// sees the chunks of a change not yet committed. It returns how many keys
// it deleted.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	unlock, err := s.lock(ctx, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer unlock()
	now := s.now()
	cur, err := s.currentNumber(ctx)
	if err != nil {
		return 0, err
	}
	all, err := s.rdb.ZRange(ctx, s.versionsKey(), 0, -1).Result()
	if err != nil {
		return 0, fmt.Errorf("roster: sweep: %w", err)
	}
	pins, err := s.rdb.ZRangeByScore(ctx, s.pinsKey(), &redis.ZRangeBy{Min: strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return 0, fmt.Errorf("roster: sweep: %w", err)
	}
	s.rdb.ZRemRangeByScore(ctx, s.pinsKey(), "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
	keep := map[int64]bool{cur: true}
	for _, p := range pins {
		n, _ := strconv.ParseInt(p, 10, 64)
		keep[n] = true
	}
	nums := make([]int64, 0, len(all))
	for _, a := range all {
		n, _ := strconv.ParseInt(a, 10, 64)
		nums = append(nums, n)
	}
	slices.Sort(nums)
	for i := max(0, len(nums)-s.opt.KeepLast); i < len(nums); i++ {
		keep[nums[i]] = true
	}
	deleted := 0
	used := map[string]bool{}
	for _, n := range nums {
		if !keep[n] {
			pipe := s.rdb.TxPipeline()
			pipe.Del(ctx, s.manifestKey(n))
			pipe.ZRem(ctx, s.versionsKey(), strconv.FormatInt(n, 10))
			if _, err := pipe.Exec(ctx); err != nil {
				return deleted, fmt.Errorf("roster: sweep version %d: %w", n, err)
			}
			deleted++
			continue
		}
		ids, err := s.rdb.HGetAll(ctx, s.manifestKey(n)).Result()
		if err != nil {
			return deleted, fmt.Errorf("roster: sweep: %w", err)
		}
		for f, id := range ids {
			if !strings.HasPrefix(f, "#") {
				used[id] = true
			}
		}
	}
	old, err := s.rdb.ZRange(ctx, s.chunksKey(), 0, -1).Result()
	if err != nil {
		return deleted, fmt.Errorf("roster: sweep: %w", err)
	}
	var gone []string
	for _, id := range old {
		if !used[id] {
			gone = append(gone, id)
		}
	}
	for start := 0; start < len(gone); start += 500 {
		part := gone[start:min(start+500, len(gone))]
		pipe := s.rdb.Pipeline()
		for _, id := range part {
			pipe.Del(ctx, s.chunkKey(id))
		}
		members := make([]any, len(part))
		for i, id := range part {
			members[i] = id
		}
		pipe.ZRem(ctx, s.chunksKey(), members...)
		if _, err := pipe.Exec(ctx); err != nil {
			return deleted, fmt.Errorf("roster: sweep chunks: %w", err)
		}
		deleted += len(part)
	}
	return deleted, nil
}

// ErrBusy is returned when another change holds the roster for longer than
// a change waits.
var ErrBusy = errors.New("another roster change is being applied: try again in a moment")

// lock serialises changes across processes: one change at a time computes
// its difference against the current version and commits on it. The lock
// expires by itself if its holder dies.
func (s *Store) lock(ctx context.Context, wait time.Duration) (func(), error) {
	var b [12]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	deadline := time.Now().Add(wait)
	for {
		ok, err := s.rdb.SetNX(ctx, s.lockKey(), token, lockTTL).Result()
		if err != nil {
			return nil, fmt.Errorf("roster: lock: %w", err)
		}
		if ok {
			return func() { unlockScript.Run(context.WithoutCancel(ctx), s.rdb, []string{s.lockKey()}, token) }, nil
		}
		if time.Now().After(deadline) {
			return nil, ErrBusy
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// lockTTL bounds a change; an import of a million people takes seconds.
const lockTTL = 2 * time.Minute

var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
`)
