package main

import (
	"fmt"

	"warngate/channels"
)

// attachCalls attaches the notifiers that follow their own calls (SIP) to
// the dispatcher, which takes their reports and key presses: only a
// process that runs workers places calls, so only it starts their SIP
// user agents. While the dispatcher takes no key presses, they stay
// detached and refuse to call, and the log says so.
func (a *app) attachCalls() error {
	if len(a.providers.selfReporting) == 0 {
		return nil
	}
	sink, ok := channels.AsCallSink(a.dispatcher)
	if !ok {
		a.log.Warn("voice: SIP accounts place no calls: the dispatcher takes no key presses")
		return nil
	}
	for _, sr := range a.providers.selfReporting {
		if err := sr.Attach(sink); err != nil {
			return fmt.Errorf("voice: %w", err)
		}
	}
	return nil
}
