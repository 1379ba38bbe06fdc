package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/warning"
)

// resendRequest is the optional body of POST /api/v1/warnings/{id}/resend.
type resendRequest struct {
	Channels []string `json:"channels"`
	States   []string `json:"states"`
}

// resend sends a live warning again to those it has not reached: failed
// (and expired) deliveries, per channel. Sent and delivered ones are never
// sent again.
func (s *server) resend(c *gin.Context) {
	var req resendRequest
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 4<<10))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		fail(c, http.StatusBadRequest, "invalid_request", `send nothing, or {"channels":["sms"],"states":["failed","expired"]}: `+err.Error(), "")
		return
	}
	chans, states, fields := checkResend(req)
	if len(fields) > 0 {
		fail(c, http.StatusBadRequest, "invalid_request", fields[0].Field+": "+fields[0].Message, fields[0].Field, fields...)
		return
	}
	res, err := s.Dispatcher.Resend(c.Request.Context(), c.Param("id"), actorOf(c), chans, states)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		fail(c, http.StatusNotFound, "not_found", "no warning with id "+c.Param("id"), "id")
	case errors.Is(err, ledger.ErrState):
		fail(c, http.StatusConflict, "wrong_state", err.Error(), "")
	case err != nil:
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
	default:
		c.JSON(http.StatusOK, gin.H{"warning_id": c.Param("id"), "channels": res.Channels, "total": res.Total})
	}
}

// checkResend reads the channels and states asked for, naming each bad one.
func checkResend(req resendRequest) ([]warning.Channel, []warning.DeliveryState, []fieldError) {
	var fields []fieldError
	var chans []warning.Channel
	for i, name := range req.Channels {
		ch := warning.Channel(name)
		if !slices.Contains(warning.Channels, ch) {
			fields = append(fields, fieldError{Field: fmt.Sprintf("channels[%d]", i), Message: fmt.Sprintf("unknown channel %q: use wecom, sms, wechat, voice, broadcast, screen or calllist", name)})
			continue
		}
		chans = append(chans, ch)
	}
	var states []warning.DeliveryState
	for i, name := range req.States {
		st := slices.IndexFunc(dispatcher.ResendStates, func(s warning.DeliveryState) bool { return s.String() == name })
		if st < 0 {
			fields = append(fields, fieldError{Field: fmt.Sprintf("states[%d]", i), Message: fmt.Sprintf("%q: only failed or expired deliveries are sent again (sent and delivered ones never are)", name)})
			continue
		}
		states = append(states, dispatcher.ResendStates[st])
	}
	return chans, states, fields
}
