package main

import (
	"fmt"

	"warngate/channels"
)

// attachSelfReporting attaches the notifiers that follow their own
// messages to the dispatcher, which takes their reports and key presses:
// only a process that runs workers sends, so only it starts their SIP user
// agents and connects to Kannel's bearerbox (the box transport). While the
// dispatcher takes no key presses, they stay detached and refuse to send,
// and the log says so.
func (a *app) attachSelfReporting() error {
	if len(a.providers.selfReporting) == 0 {
		return nil
	}
	sink, ok := channels.AsCallSink(a.dispatcher)
	if !ok {
		a.log.Warn("SIP accounts place no calls and Kannel box connections send nothing: the dispatcher takes no key presses")
		return nil
	}
	for _, sr := range a.providers.selfReporting {
		if err := sr.Attach(sink); err != nil {
			return fmt.Errorf("start the voice and box connections: %w", err)
		}
	}
	return nil
}
