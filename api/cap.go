package api

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
	"warngate/warning/cap"
)

// CAP identity of this gateway's exports.
const (
	capSender     = "kmyjj.warngate"
	capIDPrefix   = "CN-KM-WG-"
	capSenderName = "昆明市应急管理局"
)

// jurisdiction is what the gateway may warn: the divisions of its tree, and
// for shapes, the counties their boundaries touch.
type jurisdiction struct{ tree *region.Tree }

// Known implements cap.Jurisdiction; the province above the city is not
// the gateway's to warn.
func (j jurisdiction) Known(code string) bool {
	d, ok := j.tree.Get(code)
	return ok && d.Level != region.Province
}

func (j jurisdiction) Locate(s cap.Shape) ([]string, error) {
	circles := make([]region.Circle, len(s.Circles))
	for i, c := range s.Circles {
		circles[i] = region.Circle(c)
	}
	return region.CountiesTouching(s.Polygons, circles)
}

// importCAP takes a CAP 1.2 alert (or an Atom/RSS entry carrying one) from
// another system: an Alert becomes a warning, an Update replaces the
// warning it references, a Cancel lifts it. The same sender and identifier
// twice make one warning.
func (s *server) importCAP(c *gin.Context) {
	body, ok := readBody(c, cap.DefaultMaxBytes, "a CAP document")
	if !ok {
		return
	}
	a, err := cap.Parse(bytes.NewReader(body), cap.Limits{})
	if err != nil {
		failCAP(c, err)
		return
	}
	if err := a.CheckSent(time.Now()); err != nil {
		failCAP(c, err)
		return
	}
	ctx := c.Request.Context()
	w, err := a.Warning(jurisdiction{s.Tree})
	if err != nil {
		failCAP(c, err)
		return
	}
	// The same sender and identifier again: the same message sent twice
	// is answered with the warning it became; another message under the
	// same identifier is the sender's mistake, and refused rather than
	// dropped in silence.
	if id, err := s.Ledger.FindExternalID(ctx, a.Sender, a.Identifier); err == nil {
		if first, err := s.Ledger.Warning(ctx, id); err == nil {
			if !s.areasInside(c, first.Areas) { // not a way to read another division's warning
				return
			}
			if !sameCAPMessage(w, first) {
				failIdentifierReused(c, a, first.ID)
				return
			}
			c.JSON(http.StatusOK, s.warningView(first))
			return
		}
	}
	// The warning a CAP update or cancel refers to, if it came through
	// here: one live or awaiting approval, else one that has ended.
	now := time.Now()
	var ref, ended *warning.Warning
	for _, r := range a.References {
		id, err := s.Ledger.FindExternalID(ctx, r.Sender, r.Identifier)
		if err != nil {
			continue
		}
		x, err := s.Ledger.Warning(ctx, id)
		switch {
		case err != nil:
		case x.Live(now) || x.State == warning.StateAwaitingApproval && !x.Expired(now):
			ref = x
		case ended == nil || x.State == warning.StateCancelled:
			ended = x
		}
	}
	if !s.areasInside(c, w.Areas) {
		return
	}
	// The user (or token) who imports is the issuer; the CAP sender is how.
	by := actorOf(c)
	by.Via = strings.TrimPrefix(by.Via+" cap:"+a.Sender, " ")
	opt := dispatcher.SubmitOptions{By: by, IdempotencyKey: "cap|" + a.Sender + "|" + a.Identifier, NeedsApproval: s.needsApproval(principalOf(c), w.Level)}
	var stored *warning.Warning
	status := http.StatusAccepted
	if w.MsgType != warning.MsgAlert && ref == nil {
		// An update or cancel never becomes a new alert: what it refers
		// to is unknown here, or has ended.
		if ended != nil && !s.within(principalOf(c), ended.Areas) {
			fail(c, http.StatusForbidden, "outside_division", "the warning this "+strings.ToLower(a.MsgType)+" references covers divisions outside yours", "alert/references")
			return
		}
		switch {
		case ended != nil && w.MsgType == warning.MsgCancel && ended.State == warning.StateCancelled:
			// The same cancel again, or another for a warning lifted
			// already: done, as asked.
			c.Header("Location", "/api/v1/warnings/"+ended.ID)
			c.JSON(http.StatusOK, capDone{s.warningView(ended), "warning " + ended.ID + " was cancelled already; nothing more was done"})
		case ended != nil:
			fail(c, http.StatusConflict, "reference_ended", fmt.Sprintf(
				"the warning this %s references, %s, is %s and no longer in force, so nothing was done; a new warning is a CAP Alert",
				strings.ToLower(a.MsgType), ended.ID, endedState(ended, now)), "alert/references")
		case w.MsgType == warning.MsgCancel:
			fail(c, http.StatusNotFound, "nothing_to_cancel", "the alerts this cancel references are not warnings of this gateway", "alert/references")
		default:
			fail(c, http.StatusNotFound, "nothing_to_update", "the alerts this update references are not warnings of this gateway, so nothing was done; a new warning is a CAP Alert", "alert/references")
		}
		return
	}
	switch {
	case w.MsgType == warning.MsgCancel:
		// A warning awaiting approval is withdrawn: it never goes out.
		if !s.within(principalOf(c), ref.Areas) {
			fail(c, http.StatusForbidden, "outside_division", "the warning this cancel lifts covers divisions outside yours", "alert/references")
			return
		}
		stored, err = s.Dispatcher.Cancel(ctx, ref.ID, by)
		status = http.StatusOK
	case w.MsgType == warning.MsgUpdate:
		w.References = nil
		if !s.within(principalOf(c), ref.Areas) {
			fail(c, http.StatusForbidden, "outside_division", "the warning this update replaces covers divisions outside yours", "alert/references")
			return
		}
		if ref.State == warning.StateAwaitingApproval {
			stored, err = s.replacePending(ctx, ref, w, opt)
		} else {
			stored, err = s.Dispatcher.Update(ctx, ref.ID, w, opt)
		}
	default:
		w.References = nil
		stored, _, err = s.Dispatcher.Submit(ctx, w, opt)
	}
	if errors.Is(err, dispatcher.ErrInvalid) {
		failFields(c, err)
		return
	}
	var kr *ledger.KeyReusedError
	if errors.As(err, &kr) {
		failIdentifierReused(c, a, kr.FirstID)
		return
	}
	if errors.Is(err, ledger.ErrState) {
		fail(c, http.StatusConflict, "wrong_state", "the warning this "+strings.ToLower(a.MsgType)+" references changed meanwhile, and nothing was done: "+err.Error(), "alert/references")
		return
	}
	if err != nil && stored != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", "the CAP alert was taken only in part; send it again: "+err.Error(), "")
		return
	}
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", "the CAP alert was NOT taken: "+err.Error(), "")
		return
	}
	if w.MsgType != warning.MsgCancel {
		if err := s.Ledger.SetExternalID(ctx, a.Sender, a.Identifier, stored.ID); err != nil {
			s.Log.Error("CAP identifier not indexed", "warning_id", stored.ID, "err", err)
		}
	}
	c.Header("Location", "/api/v1/warnings/"+stored.ID)
	c.JSON(status, s.warningView(stored))
}

// capDone answers a CAP message that asks for what was done already.
type capDone struct {
	warningView
	Note string `json:"note"`
}

// endedState says why a warning is no longer in force.
func endedState(w *warning.Warning, now time.Time) string {
	switch {
	case w.State == warning.StateCancelled && w.Withdrawn:
		return "withdrawn"
	case w.State == warning.StateSuperseded:
		return "superseded by an update"
	case w.Expired(now):
		return "expired"
	}
	return string(w.State)
}

// replacePending puts w, a CAP update, in the place of pending, a warning
// still awaiting approval. The dispatcher updates live warnings only; one
// awaiting approval was never sent, so w takes its place as what it was
// (an alert, or an update of the warning it would replace), and pending is
// withdrawn, leaving one version to approve. w is stored first: should the
// withdrawal fail, the sender's retry finds w by its idempotency key and
// withdraws pending then.
func (s *server) replacePending(ctx context.Context, pending, w *warning.Warning, opt dispatcher.SubmitOptions) (*warning.Warning, error) {
	w.MsgType, w.References = pending.MsgType, slices.Clone(pending.References)
	if w.MsgType != warning.MsgUpdate || len(w.References) == 0 {
		w.MsgType, w.References = warning.MsgAlert, nil
	}
	stored, _, err := s.Dispatcher.Submit(ctx, w, opt)
	if err != nil {
		return nil, err
	}
	if w.MsgType == warning.MsgUpdate {
		// The version pending replaced is now replaced by w.
		if err := s.Ledger.Supersede(ctx, w.References[0], stored.ID); err != nil {
			return stored, fmt.Errorf("update %s stored, but %s not marked replaced by it: %v", stored.ID, w.References[0], err)
		}
	}
	if _, err := s.Dispatcher.Cancel(ctx, pending.ID, opt.By); err != nil {
		return stored, fmt.Errorf("update %s stored, but %s, the version awaiting approval it replaces, not withdrawn: %v", stored.ID, pending.ID, err)
	}
	return stored, nil
}

// sameCAPMessage reports whether w, mapped from a CAP document, says what
// first, the warning its sender and identifier became, says. first was
// normalized when it was checked, and took the message type and
// references the import gave it.
func sameCAPMessage(w, first *warning.Warning) bool {
	x := *w
	x.Normalize()
	if x.MsgType != warning.MsgCancel {
		x.MsgType, x.References = first.MsgType, first.References
	}
	return x.Fingerprint() == first.Fingerprint()
}

func failIdentifierReused(c *gin.Context, a *cap.Alert, firstID string) {
	fail(c, http.StatusUnprocessableEntity, "identifier_reused", fmt.Sprintf(
		"%s already sent identifier %s, which became warning %s, and this document says something else; "+
			"CAP gives every message its own identifier: send a change as an Update, or the lift as a Cancel, with a new identifier that references it",
		a.Sender, a.Identifier, firstID), "alert/identifier")
}

func failCAP(c *gin.Context, err error) {
	var ce *cap.Error
	switch {
	case errors.Is(err, cap.ErrOutOfJurisdiction):
		fail(c, http.StatusUnprocessableEntity, "out_of_jurisdiction", err.Error()+"; this gateway warns Kunming (530100000000) only", "alert/info/area")
	case errors.As(err, &ce):
		fail(c, http.StatusBadRequest, "invalid_cap", err.Error(), ce.Path)
	default:
		fail(c, http.StatusBadRequest, "invalid_cap", err.Error(), "")
	}
}

func (s *server) encodeCAP(c *gin.Context, w *warning.Warning) ([]byte, error) {
	// A reference to a warning the ledger no longer has cannot be written
	// (CAP wants its sent time); the document goes out without it.
	known := w.References[:0:0]
	for _, id := range w.References {
		if _, err := s.Ledger.Warning(c.Request.Context(), id); err == nil || strings.Count(id, ",") == 2 {
			known = append(known, id)
		} else {
			s.Log.Warn("CAP export: reference dropped", "warning_id", w.ID, "reference", id, "err", err)
		}
	}
	if len(known) != len(w.References) {
		x := *w
		x.References = known
		w = &x
	}
	return cap.Encode(w, cap.EncodeOptions{
		Sender: capSender, IdentifierPrefix: capIDPrefix, SenderName: capSenderName,
		AreaName: func(code string) string {
			if d, ok := s.Tree.Get(code); ok {
				return d.Name
			}
			return ""
		},
		Reference: func(id string) (cap.Reference, bool) {
			x, err := s.Ledger.Warning(c.Request.Context(), id)
			if err != nil {
				return cap.Reference{}, false
			}
			return cap.Reference{Sender: capSender, Identifier: capIDPrefix + x.ID, Sent: x.Issued}, true
		},
	})
}

func (s *server) exportCAP(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	s.writeCAP(c, w)
}

func (s *server) writeCAP(c *gin.Context, w *warning.Warning) {
	doc, err := s.encodeCAP(c, w)
	if err != nil {
		fail(c, http.StatusInternalServerError, "cap_export", err.Error(), "")
		return
	}
	c.Data(http.StatusOK, "application/cap+xml; charset=utf-8", doc)
}

// publicWarning is what the public sees: no personal data, ever.
type publicWarning struct {
	ID          string    `json:"id"`
	MsgType     string    `json:"msg_type"`
	Hazard      string    `json:"hazard"`
	HazardName  string    `json:"hazard_name"`
	Level       string    `json:"level"`
	LevelName   string    `json:"level_name"`
	Status      string    `json:"status"`
	Headline    string    `json:"headline"`
	Description string    `json:"description"`
	Instruction string    `json:"instruction,omitempty"`
	Areas       []string  `json:"areas"`
	AreaNames   []string  `json:"area_names"`
	Issued      time.Time `json:"issued"`
	Expires     time.Time `json:"expires"`
	Cancelled   time.Time `json:"cancelled,omitzero"`
	CAP         string    `json:"cap"`
}

// CancelShown is how long, at the least, a lifted warning stays in the
// public feeds as its Cancel; it stays until it would have expired if that
// is later. A consumer that polls the feeds then takes it down, even one
// that was away for a while.
const CancelShown = 24 * time.Hour

// feedWarnings lists, newest first, what the public feeds carry for area
// (or everywhere) and the given statuses: the live warnings, and the lifted
// ones while CancelShown says. A warning withdrawn before its release was
// never public and is not shown.
func (s *server) feedWarnings(c *gin.Context, area string, statuses []warning.Status) (live, lifted []*warning.Warning, err error) {
	ctx := c.Request.Context()
	ids, err := s.Ledger.Warnings(ctx, 0, 500)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	for _, id := range ids {
		w, err := s.Ledger.Warning(ctx, id)
		if err != nil || !slices.Contains(statuses, w.Status) {
			continue
		}
		isLive := w.Live(now)
		isLifted := w.State == warning.StateCancelled && !w.Withdrawn &&
			(now.Before(w.Expires) || (!w.Cancelled.IsZero() && now.Before(w.Cancelled.Add(CancelShown))))
		if !isLive && !isLifted {
			continue
		}
		if area != "" {
			hit := false
			for _, a := range w.Areas {
				// A warning for the county covers a village; one for a
				// village is shown to the county's page too.
				hit = hit || s.Tree.Covers(a, area) || s.Tree.Covers(area, a)
			}
			if !hit {
				continue
			}
		}
		if isLive {
			live = append(live, w)
		} else {
			lifted = append(lifted, w)
		}
	}
	return live, lifted, nil
}

func publicStatuses(c *gin.Context) []warning.Status {
	st := []warning.Status{warning.StatusActual}
	for _, inc := range strings.Split(c.Query("include"), ",") {
		switch inc {
		case "exercise":
			st = append(st, warning.StatusExercise)
		case "test":
			st = append(st, warning.StatusTest)
		}
	}
	return st
}

func (s *server) publicJSON(c *gin.Context) {
	area := c.Query("area")
	if area != "" {
		if _, ok := s.Tree.Get(area); !ok {
			fail(c, http.StatusBadRequest, "invalid_query", "area: not a division code of this gateway, e.g. 530102000000", "area")
			return
		}
	}
	live, lifted, err := s.feedWarnings(c, area, publicStatuses(c))
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	c.Header("Cache-Control", "public, max-age=15")
	// Lifted warnings have a list of their own: a consumer that shows
	// every entry of "warnings" never shows one that no longer applies.
	c.JSON(http.StatusOK, gin.H{"warnings": s.publicWarnings(live), "cancelled": s.publicWarnings(lifted)})
}

func (s *server) publicWarnings(ws []*warning.Warning) []publicWarning {
	out := make([]publicWarning, 0, len(ws))
	for _, w := range ws {
		p := publicWarning{ID: w.ID, MsgType: string(w.MsgType), Hazard: string(w.Hazard), HazardName: w.Hazard.Chinese(), Level: w.Level.String(),
			LevelName: w.Level.Colour() + "预警（" + w.Level.Roman() + "级/" + w.Level.Grade() + "）", Status: string(w.Status),
			Headline: w.Title(), Description: w.Description, Instruction: w.Instruction, Areas: w.Areas,
			Issued: w.Issued, Expires: w.Expires, CAP: "/public/warnings/" + w.ID + "/cap.xml"}
		if w.State == warning.StateCancelled {
			p.MsgType, p.Cancelled = string(warning.MsgCancel), w.Cancelled
		}
		if p.MsgType == "" {
			p.MsgType = string(warning.MsgAlert)
		}
		for _, a := range w.Areas {
			if d, ok := s.Tree.Get(a); ok {
				p.AreaNames = append(p.AreaNames, d.Name)
			}
		}
		out = append(out, p)
	}
	return out
}

func (s *server) publicCAP(c *gin.Context) {
	w, err := s.Ledger.Warning(c.Request.Context(), c.Param("id"))
	if err != nil || w.State == warning.StateAwaitingApproval || w.Withdrawn {
		fail(c, http.StatusNotFound, "not_found", "no such warning", "id")
		return
	}
	s.writeCAP(c, w)
}

// Atom feed of active warnings, following the CAP feed conventions: each
// entry links its CAP document.
type atomFeed struct {
	XMLName xml.Name    `xml:"http://www.w3.org/2005/Atom feed"`
	ID      string      `xml:"id"`
	Title   string      `xml:"title"`
	Updated string      `xml:"updated"`
	Author  atomPerson  `xml:"author"`
	Link    []atomLink  `xml:"link"`
	Entries []atomEntry `xml:"entry"`
}

type atomPerson struct {
	Name string `xml:"name"`
}

type atomLink struct {
	Rel  string `xml:"rel,attr,omitempty"`
	Type string `xml:"type,attr,omitempty"`
	Href string `xml:"href,attr"`
}

type atomEntry struct {
	ID      string     `xml:"id"`
	Title   string     `xml:"title"`
	Updated string     `xml:"updated"`
	Summary string     `xml:"summary"`
	Link    []atomLink `xml:"link"`
}

func (s *server) publicAtom(c *gin.Context) {
	live, lifted, err := s.feedWarnings(c, c.Query("area"), publicStatuses(c))
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	base := s.PublicURL
	feed := atomFeed{ID: base + "/public/warnings.atom", Title: "昆明市预警信息", Author: atomPerson{Name: capSenderName},
		Updated: time.Now().In(cst).Format(time.RFC3339), Link: []atomLink{{Rel: "self", Href: base + "/public/warnings.atom"}}}
	entry := func(w *warning.Warning, id, title string, updated time.Time) atomEntry {
		return atomEntry{
			ID: "urn:oid:" + id, Title: title, Updated: updated.In(cst).Format(time.RFC3339),
			Summary: w.Description,
			Link:    []atomLink{{Rel: "alternate", Type: "application/cap+xml", Href: base + "/public/warnings/" + w.ID + "/cap.xml"}},
		}
	}
	for _, w := range live {
		feed.Entries = append(feed.Entries, entry(w, capIDPrefix+w.ID, w.Title(), w.Accepted))
	}
	// A lifted warning's entry is its Cancel, a message of its own: the
	// entry of the alert it lifts is gone.
	for _, w := range lifted {
		updated := w.Cancelled
		if updated.IsZero() {
			updated = w.Accepted
		}
		feed.Entries = append(feed.Entries, entry(w, capIDPrefix+w.ID+cap.CancelSuffix, cap.LiftedTitle(w), updated))
	}
	out, _ := xml.MarshalIndent(feed, "", "  ")
	c.Data(http.StatusOK, "application/atom+xml; charset=utf-8", append([]byte(xml.Header), out...))
}
