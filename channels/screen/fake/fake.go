// Package fake is an in-process VNNOX-style screen cloud for tests and
// warngate's embedded demo. It serves
//
//	POST /v2/player/emergency-program/page    single-page emergency insertion
//	POST /v2/player/emergency-program/cancel  cancel it
//
// checking the AppKey, Nonce, CurTime and CheckSum headers and the body,
// answering {"success": [...], "fail": [...]} by player id (offline players
// in fail, unknown ones in neither), and later pushing play logs, signed the
// same way, to a callback URL.
//
// It implements the signature and wire format itself rather than importing
// the adapter. It keeps everything in memory and is never for production.
package fake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"warngate/channels/internal/fakepush"
)

// Config describes the simulated account.
type Config struct {
	AppKey    string
	AppSecret string
	// Players are the account's player ids; nil means any non-empty id.
	Players []string
	// Offline players are answered in "fail".
	Offline []string
	// CallbackURL receives play logs; empty sends none.
	CallbackURL string
	// ReportDelay is the time from insertion to its play log.
	ReportDelay time.Duration
	// FailPlay players take the insertion but log FAILED (a broken module).
	FailPlay []string
	// Record keeps every insertion for Insertions.
	Record bool
}

// Insertion is one accepted emergency insertion.
type Insertion struct {
	Task            string // page name
	Players         []string
	DurationMS      int64
	BackgroundColor string
	SpotsType       string
	Lines           []string // text of each line, in order
	Cancelled       bool
}

type request struct {
	PlayerIDs []string `json:"playerIds"`
	Attribute *struct {
		SpotsType           string `json:"spotsType"`
		NormalProgramStatus string `json:"normalProgramStatus"`
		Duration            int64  `json:"duration"`
		TimingTime          string `json:"timingTime"`
		BackgroundColor     string `json:"backgroundColor"`
	} `json:"attribute"`
	Page *struct {
		Name    string `json:"name"`
		Widgets []struct {
			Type     string `json:"type"`
			Duration int64  `json:"duration"`
			Layout   *struct {
				X, Y, Width, Height string
			} `json:"layout"`
			Lines []struct {
				TextAttributes []struct {
					Content   string `json:"content"`
					FontSize  int    `json:"fontSize"`
					TextColor string `json:"textColor"`
				} `json:"textAttributes"`
			} `json:"lines"`
		} `json:"widgets"`
	} `json:"page"`
}

type playLog struct {
	PlayerID    string `json:"playerId"`
	ProgramName string `json:"programName"`
	Status      string `json:"status"`
	Reason      string `json:"reason,omitempty"`
	Timestamp   int64  `json:"timestamp"`
}

// Server is the fake cloud.
type Server struct {
	cfg      Config
	hc       *http.Client
	log      *slog.Logger
	players  map[string]bool
	offline  map[string]bool
	failPlay map[string]bool

	mu         sync.Mutex
	insertions []Insertion
	failNext   []int

	nonces   fakepush.Nonces
	push     fakepush.Pusher
	logsSent atomic.Int64
}

// New returns a fake cloud; hc posts play logs. Close it to stop them.
func New(cfg Config, hc *http.Client, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Server{cfg: cfg, hc: hc, log: log.With("provider", "screen-fake"), offline: set(cfg.Offline), failPlay: set(cfg.FailPlay)}
	if cfg.Players != nil {
		s.players = set(cfg.Players)
	}
	return s
}

func set(l []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range l {
		m[v] = true
	}
	return m
}

// Close stops play logs not yet sent and waits for those under way.
func (s *Server) Close() { s.push.Close() }

// Insertions returns the accepted insertions (with Config.Record).
func (s *Server) Insertions() []Insertion {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Insertion(nil), s.insertions...)
}

// LogsSent counts play logs the callback URL took.
func (s *Server) LogsSent() int64 { return s.logsSent.Load() }

// FailNextStatus makes the next request answer with an HTTP status.
func (s *Server) FailNextStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, status)
}

// CheckSum is VNNOX's signature: hex(SHA-256(secret + nonce + curTime)).
func CheckSum(secret, nonce, curTime string) string {
	sum := sha256.Sum256([]byte(secret + nonce + curTime))
	return hex.EncodeToString(sum[:])
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func problem(w http.ResponseWriter, status int, msg string) {
	reply(w, status, map[string]any{"status": status, "message": msg})
}

func (s *Server) authenticate(h http.Header) error {
	key, nonce, cur, sum := h.Get("AppKey"), h.Get("Nonce"), h.Get("CurTime"), h.Get("CheckSum")
	if key != s.cfg.AppKey {
		return errors.New("invalid AppKey")
	}
	if subtle.ConstantTimeCompare([]byte(sum), []byte(CheckSum(s.cfg.AppSecret, nonce, cur))) != 1 {
		return errors.New("CheckSum verification failed")
	}
	sec, err := strconv.ParseInt(cur, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return errors.New("CurTime expired")
	}
	if !s.nonces.Fresh(nonce) {
		return errors.New("Nonce reused")
	}
	return nil
}

// ServeHTTP implements http.Handler. It may be mounted under a prefix.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var cancel bool
	switch {
	case strings.HasSuffix(r.URL.Path, "/v2/player/emergency-program/page"):
	case strings.HasSuffix(r.URL.Path, "/v2/player/emergency-program/cancel"):
		cancel = true
	default:
		problem(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodPost {
		problem(w, http.StatusMethodNotAllowed, "POST only")
		return
	}
	s.mu.Lock()
	if len(s.failNext) > 0 {
		st := s.failNext[0]
		s.failNext = s.failNext[1:]
		s.mu.Unlock()
		problem(w, st, http.StatusText(st))
		return
	}
	s.mu.Unlock()
	if err := s.authenticate(r.Header); err != nil {
		problem(w, http.StatusUnauthorized, err.Error())
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		problem(w, http.StatusBadRequest, "unreadable body")
		return
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		problem(w, http.StatusBadRequest, "malformed JSON")
		return
	}
	if len(req.PlayerIDs) == 0 || len(req.PlayerIDs) > 100 {
		problem(w, http.StatusBadRequest, "playerIds: 1 to 100 players")
		return
	}
	var ok, fail []string
	for _, p := range req.PlayerIDs {
		switch {
		case p == "" || (s.players != nil && !s.players[p]):
			// unknown to the account: in neither list
		case s.offline[p]:
			fail = append(fail, p)
		default:
			ok = append(ok, p)
		}
	}
	if ok == nil {
		ok = []string{}
	}
	if fail == nil {
		fail = []string{}
	}
	if cancel {
		s.mu.Lock()
		for i := range s.insertions {
			for _, p := range s.insertions[i].Players {
				for _, c := range ok {
					if p == c {
						s.insertions[i].Cancelled = true
					}
				}
			}
		}
		s.mu.Unlock()
		reply(w, http.StatusOK, map[string]any{"success": ok, "fail": fail})
		return
	}
	if msg := check(&req); msg != "" {
		problem(w, http.StatusBadRequest, msg)
		return
	}
	if s.cfg.Record {
		ins := Insertion{Task: req.Page.Name, Players: ok, DurationMS: req.Attribute.Duration, BackgroundColor: req.Attribute.BackgroundColor, SpotsType: req.Attribute.SpotsType}
		for _, wd := range req.Page.Widgets {
			for _, l := range wd.Lines {
				for _, t := range l.TextAttributes {
					ins.Lines = append(ins.Lines, t.Content)
				}
			}
		}
		s.mu.Lock()
		s.insertions = append(s.insertions, ins)
		s.mu.Unlock()
	}
	reply(w, http.StatusOK, map[string]any{"success": ok, "fail": fail})
	if len(ok) > 0 && s.cfg.CallbackURL != "" {
		s.push.Go(func() { s.report(req.Page.Name, ok) })
	}
}

// check returns what is wrong with an insertion, or "".
func check(r *request) string {
	a := r.Attribute
	switch {
	case a == nil:
		return "attribute: required"
	case a.SpotsType != "IMMEDIATELY" && a.SpotsType != "TIMING":
		return "attribute.spotsType: IMMEDIATELY or TIMING"
	case a.SpotsType == "TIMING" && a.TimingTime == "":
		return "attribute.timingTime: required for TIMING"
	case a.NormalProgramStatus == "":
		return "attribute.normalProgramStatus: required"
	case a.Duration <= 0:
		return "attribute.duration: milliseconds, above 0"
	case r.Page == nil || r.Page.Name == "":
		return "page.name: required"
	case len(r.Page.Widgets) == 0:
		return "page.widgets: at least one"
	}
	for i, w := range r.Page.Widgets {
		switch {
		case w.Type == "":
			return fmt.Sprintf("page.widgets[%d].type: required", i)
		case w.Layout == nil:
			return fmt.Sprintf("page.widgets[%d].layout: required", i)
		case w.Type == "ARCH_TEXT" && len(w.Lines) == 0:
			return fmt.Sprintf("page.widgets[%d].lines: required for ARCH_TEXT", i)
		}
	}
	return ""
}

func (s *Server) report(task string, players []string) {
	if !s.push.Sleep(s.cfg.ReportDelay) {
		return
	}
	logs := make([]playLog, len(players))
	now := time.Now().UnixMilli()
	for i, p := range players {
		logs[i] = playLog{PlayerID: p, ProgramName: task, Status: "PLAYED", Timestamp: now}
		if s.failPlay[p] {
			logs[i].Status, logs[i].Reason = "FAILED", "模组故障"
		}
	}
	body, _ := json.Marshal(map[string]any{"logs": logs})
	if err := s.push.Push(func() error { return s.post(body) }); err != nil {
		s.log.Warn("screen fake: play logs not taken", "task", task, "err", err)
		return
	}
	s.logsSent.Add(int64(len(logs)))
}

func (s *Server) post(body []byte) error {
	ctx, cancel := context.WithTimeoutCause(context.Background(), 5*time.Second, errors.New("screen fake: play log push timed out"))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	nonce := s.push.Nonce()
	cur := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("AppKey", s.cfg.AppKey)
	req.Header.Set("Nonce", nonce)
	req.Header.Set("CurTime", cur)
	req.Header.Set("CheckSum", CheckSum(s.cfg.AppSecret, nonce, cur))
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback answered %s", resp.Status)
	}
	return nil
}
