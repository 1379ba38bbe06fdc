package sipvoice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/diago"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"warngate/channels"
	"warngate/channels/voice"
	"warngate/warning"
)

// call is one call in progress.
type call struct {
	s      *SIP
	sink   channels.CallSink
	ref    warning.Ref
	lease  voice.Lease
	prompt string // the WAV file of the warning
	asks   bool   // whether the call waits for a key press
	callID string
	log    *slog.Logger

	keys     string
	detail   string // the trunk's answer, for the report of a call not answered
	answered time.Time
}

// run places the call, follows it to its end, reports it and frees its
// line.
func (c *call) run() {
	defer c.s.calls.Done()
	stopKeep := c.keepLine()
	start := c.s.now()
	outcome := c.place()
	end := c.s.now()
	stopKeep()
	rc := warning.Call{Outcome: outcome, Keys: c.keys, Ring: end.Sub(start), Account: c.lease.Account}
	if !c.answered.IsZero() {
		rc.Ring, rc.Talk = c.answered.Sub(start), end.Sub(c.answered)
		rc.Billed = warning.BilledMinutes(rc.Talk)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.s.ctx), 10*time.Second)
	defer cancel()
	if err := c.s.lines.Release(ctx, c.lease); err != nil {
		c.log.Warn("sip: line not released; it comes free when its lease runs out", "err", err)
	}
	c.report(ctx, rc.Report(c.ref, c.callID, end, c.detail))
}

// keepLine extends the call's lease while the call goes on.
func (c *call) keepLine() (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(leaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), leaseTTL/3)
				ok, err := c.s.lines.Extend(ctx, c.lease, leaseTTL)
				cancel()
				if err == nil && !ok {
					c.log.Warn("sip: the call's line was let go while the call goes on: the trunk may be asked for one call more than its lines")
				}
			}
		}
	}()
	return func() { close(done) }
}

// report hands the call's report to the sink, trying a few times: there is
// no provider to push it again.
func (c *call) report(ctx context.Context, r warning.Report) {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		if err = c.sink.Record(ctx, []warning.Report{r}); err == nil {
			return
		}
	}
	c.log.Error("sip: call report not recorded", "outcome", string(r.Call.Outcome), "err", err)
}

// place makes the call and returns how it ended.
func (c *call) place() warning.CallOutcome {
	s := c.s
	uri := sip.Uri{Scheme: "sip", User: s.cfg.DialPrefix + c.lease.Phone, Host: s.host, Port: s.port,
		UriParams: sip.NewParams(), Headers: sip.NewParams()}
	if s.cfg.Transport != "udp" {
		uri.UriParams.Add("transport", s.cfg.Transport)
	}
	d, err := s.dg.NewDialog(uri, diago.NewDialogOptions{})
	if err != nil {
		c.detail = mask(err.Error())
		return warning.CallFailed
	}
	defer d.Close()
	callID := sip.CallIDHeader(c.callID)
	opts := diago.InviteClientOptions{Headers: []sip.Header{&callID}, Username: s.cfg.Username, Password: s.password}
	if s.cfg.CallerID != "" {
		opts.WithCaller("", s.cfg.CallerID, s.host)
	}
	ringCtx, cancel := context.WithTimeout(s.ctx, s.cfg.RingTimeout)
	med, err := d.Invite(ringCtx, opts)
	cancel()
	if err != nil {
		return c.notAnswered(err, ringCtx)
	}
	defer med.Close()
	c.answered = s.now()
	if err := d.Ack(s.ctx); err != nil {
		c.detail = "ACK: " + mask(err.Error())
		return warning.CallFailed
	}
	outcome := c.converse(d, med)
	if d.Context().Err() == nil {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
		if err := d.Hangup(hctx); err != nil {
			c.log.Debug("sip: BYE not answered", "err", err)
		}
		cancel()
	}
	return outcome
}

// notAnswered maps why the INVITE ended without an answer.
func (c *call) notAnswered(err error, ringCtx context.Context) warning.CallOutcome {
	var res *sip.Response
	var rp *sipgo.ErrDialogResponse
	var rv sipgo.ErrDialogResponse
	switch {
	case errors.As(err, &rp):
		res = rp.Res
	case errors.As(err, &rv):
		res = rv.Res
	case c.s.ctx.Err() != nil:
		c.detail = "gateway stopping"
		return warning.CallFailed
	case errors.Is(ringCtx.Err(), context.DeadlineExceeded):
		return warning.CallNoAnswer
	default:
		c.detail = mask(err.Error())
		return warning.CallFailed
	}
	c.detail = mask(fmt.Sprintf("%d %s", res.StatusCode, res.Reason))
	cause := 0
	if h := res.GetHeader("Reason"); h != nil {
		cause = q850(h.Value())
		if cause != 0 {
			c.detail += fmt.Sprintf(" (Q.850 %d)", cause)
		}
	}
	return Outcome(res.StatusCode, res.Reason, cause)
}

// q850 returns the cause of a Reason header "Q.850;cause=17;text=…", or 0.
func q850(v string) int {
	proto, params, _ := strings.Cut(v, ";")
	if !strings.EqualFold(strings.TrimSpace(proto), "Q.850") {
		return 0
	}
	for _, p := range strings.Split(params, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "cause") {
			n, _ := strconv.Atoi(strings.TrimSpace(val))
			return n
		}
	}
	return 0
}

// Outcome maps the final response to an INVITE that was not answered: the
// status, its reason phrase and the Q.850 cause of a Reason header (0 for
// none). A carrier's Q.850 cause says what happened at the phone (17 user
// busy, 21 call rejected) and decides when given; otherwise the status
// does, and a 486 whose phrase says the call was rejected or declined (as
// a phone's reject button makes it) is a rejection, not a busy line.
func Outcome(status int, phrase string, cause int) warning.CallOutcome {
	switch cause {
	case 17:
		return warning.CallBusy
	case 18, 19:
		return warning.CallNoAnswer
	case 21:
		return warning.CallRejected
	case 1, 3, 20, 22, 27, 28:
		return warning.CallUnreachable
	}
	p := strings.ToLower(phrase)
	switch status {
	case 486, 600: // Busy Here, Busy Everywhere
		if strings.Contains(p, "reject") || strings.Contains(p, "declin") {
			return warning.CallRejected
		}
		return warning.CallBusy
	case 603: // Decline
		return warning.CallRejected
	case 480, 408, 487: // Temporarily Unavailable, Request Timeout, Request Terminated (our CANCEL)
		return warning.CallNoAnswer
	case 404, 410, 484, 485, 604: // no such number, gone, address incomplete, ambiguous, does not exist anywhere
		return warning.CallUnreachable
	}
	return warning.CallFailed
}

// converse plays the warning and listens for keys until the call is done.
func (c *call) converse(d *diago.DialogClientSession, med *diago.DialogMedia) warning.CallOutcome {
	s := c.s
	keys := make(chan rune, 16)
	if c.asks {
		dtmf, err := med.AudioReaderDTMF()
		if err != nil {
			c.log.Warn("sip: no RFC 4733 key presses on this call", "err", err)
		} else {
			dtmf.OnDTMF(func(k rune) error {
				select {
				case keys <- k:
				default:
				}
				return nil
			})
			go func() {
				buf := make([]byte, 1500)
				for {
					if _, err := dtmf.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}
	maxCall := time.NewTimer(s.cfg.MaxCall)
	defer maxCall.Stop()
	ended := d.Context().Done()

	p := &player{med: med, log: c.log}
	defer p.stop()
	p.play(c.prompt)
	plays, replays := 1, 0
	var wait <-chan time.Time
	for {
		select {
		case <-ended:
			return warning.CallHangup
		case <-s.ctx.Done():
			c.detail = "gateway stopping"
			return warning.CallNoKey
		case <-maxCall.C:
			return warning.CallNoKey
		case <-p.playing():
			p.finished()
			if !c.asks {
				return warning.CallNoKey
			}
			wait = time.After(s.cfg.KeyTimeout)
		case <-wait:
			wait = nil
			if plays >= s.cfg.Plays {
				return warning.CallNoKey
			}
			plays++
			p.play(c.prompt)
		case k := <-keys:
			c.keys += string(k)
			switch k {
			case channels.KeyConfirm:
				c.confirm(p, ended)
				return warning.CallAnswered
			case channels.KeyReplay:
				if replays < MaxReplays {
					c.log.Debug("sip: key 2, playing the warning again")
					replays++
					wait = nil
					p.play(c.prompt)
				}
			}
		}
	}
}

// confirm hands the key press "1" to the sink and thanks the official,
// until the thanks end or the official hangs up. A passing failure is
// tried again while the official waits.
func (c *call) confirm(p *player, ended <-chan struct{}) {
	s := c.s
	from := voice.From("sip", channels.MaskPhone(c.lease.Phone), c.callID)
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 300 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
		err = c.sink.Confirm(ctx, c.ref, channels.ConfirmMethod, from)
		cancel()
		if err == nil || errors.Is(err, channels.ErrNotConfirmable) {
			break
		}
	}
	switch {
	case errors.Is(err, channels.ErrNotConfirmable):
		c.log.Warn("sip: key press 1 changed nothing", "reason", err.Error())
		return
	case err != nil:
		c.log.Error("sip: key press 1 not recorded", "err", err)
		return
	}
	c.log.Info("sip: confirmed by key press")
	thanks, err := s.synth.WAV(s.ctx, channels.VoiceThanks)
	if err != nil {
		c.log.Warn("sip: no thanks played", "err", err)
		return
	}
	p.play(thanks)
	select {
	case <-p.playing():
	case <-ended:
	case <-s.ctx.Done():
	}
}

// player plays one file at a time on a call; playing another stops the
// one playing.
type player struct {
	med  *diago.DialogMedia
	log  *slog.Logger
	cur  *diago.AudioPlaybackControl
	done chan struct{} // closed when the current file ends or stops
	over bool          // the current file's end was taken
}

// playing returns a channel closed when the file playing ends; nil once
// its end was taken.
func (p *player) playing() <-chan struct{} {
	if p.over {
		return nil
	}
	return p.done
}

// finished takes the end of the file playing.
func (p *player) finished() { p.over = true }

func (p *player) play(path string) {
	p.stop()
	if p.done != nil {
		<-p.done // one writer at a time on the call's audio
	}
	done := make(chan struct{})
	p.done, p.over = done, false
	pb, err := p.med.PlaybackControlCreate()
	if err != nil {
		p.log.Warn("sip: nothing played", "err", err)
		close(done)
		return
	}
	p.cur = &pb
	p.log.Debug("sip: playing", "file", filepath.Base(path))
	go func() {
		defer close(done)
		if _, err := pb.PlayFile(path); err != nil && !errors.Is(err, io.EOF) {
			p.log.Debug("sip: playback ended", "err", err)
		}
	}()
}

func (p *player) stop() {
	if p.cur != nil {
		p.cur.Stop()
		p.cur = nil
	}
}

// defaultCacheDir is $TMPDIR/warngate-tts.
func defaultCacheDir() string { return filepath.Join(os.TempDir(), "warngate-tts") }
