// limiter-probe runs the request generator of `etcdctl check perf` (etcd 3.4,
// etcdctl/ctlv3/command/check.go) on its own: golang.org/x/time/rate.NewLimiter(limit, 1)
// and Wait in a loop, with no server and no requests, and prints the rate it reaches.
// With -busy a second goroutine keeps the Go scheduler running, as etcdctl's 500 client
// goroutines do while responses arrive. Built with Debian's Go (the Go of Debian's
// etcdctl) by limiter-probe.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/time/rate"
)

func main() {
	limit := flag.Int("limit", 8000, "waits per second asked for (check perf --load=l: 8000)")
	busy := flag.Bool("busy", false, "spin a goroutine beside the limiter")
	secs := flag.Int("secs", 5, "seconds to run")
	flag.Parse()
	if *busy {
		go func() {
			for {
				runtime.Gosched()
			}
		}()
	}
	l := rate.NewLimiter(rate.Limit(*limit), 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*secs)*time.Second)
	defer cancel()
	n := 0
	start := time.Now()
	for l.Wait(ctx) == nil {
		n++
	}
	fmt.Printf("%s busy=%v: %.0f waits/s of %d asked\n", runtime.Version(), *busy,
		float64(n)/time.Since(start).Seconds(), *limit)
}
