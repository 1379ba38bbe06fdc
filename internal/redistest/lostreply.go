package redistest

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// LostReply is a Redis hook that, armed with n, lets the n-th command (or
// pipeline) from then on run and then fails it, as when Redis did the work
// but its answer was lost on the way (a timeout, a dropped connection): the
// worst case for whoever wrote, whose change is made while they see an
// error.
type LostReply struct{ left atomic.Int32 }

// ErrLost is the error of a command whose reply LostReply lost.
var ErrLost = errors.New("i/o timeout (reply lost, injected)")

// Arm loses the reply of the n-th command from now on.
func (h *LostReply) Arm(n int) { h.left.Store(int32(n)) }

// Disarm stops losing replies, and says whether one was lost since Arm.
func (h *LostReply) Disarm() bool {
	lost := h.left.Load() <= 0
	h.left.Store(0) // counts down below zero from here: never fires
	return lost
}

func (h *LostReply) lose() bool { return h.left.Add(-1) == 0 }

func (h *LostReply) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *LostReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil && h.lose() {
			cmd.SetErr(ErrLost)
			return ErrLost
		}
		return err
	}
}

func (h *LostReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err == nil && h.lose() {
			for _, c := range cmds {
				c.SetErr(ErrLost)
			}
			return ErrLost
		}
		return err
	}
}
