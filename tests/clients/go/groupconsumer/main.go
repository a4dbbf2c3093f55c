// franz-go group consumer for the client tests (tests/clients/test_groups_clients.py).
//
//	groupconsumer -brokers HOST:PORT -topic T -group G -max N [-idle-ms 8000] [-timeout-ms 60000]
//
// Joins group G (classic protocol, franz-go's default cooperative-sticky balancer), processes
// records one at a time until N records were processed or none arrived for idle-ms, printing
// "R <partition> <offset> <value>" for each. It commits exactly the processed records (never a
// record it fetched but did not process), synchronously, then leaves the group and prints
// "DONE <count>". Errors are printed as "ERR ..." on stderr and exit non-zero.
//
//	groupconsumer -brokers HOST:PORT -topic T -produce N
//
// Either mode takes TLS and SASL flags (security.go): -tls-ca, -tls-cert, -tls-key, -sasl,
// -user, -password.
//
// Produces N records "franz-<i>" (key "k<i>") with franz-go's defaults (idempotent, acks=all)
// and prints "PRODUCED <n>" once every one is acknowledged.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	brokers := flag.String("brokers", "", "bootstrap servers")
	topic := flag.String("topic", "", "topic")
	group := flag.String("group", "", "group id")
	max := flag.Int("max", 0, "records to process before exiting")
	idle := flag.Int("idle-ms", 8000, "exit when no record arrived for this long (after the first)")
	timeout := flag.Int("timeout-ms", 60000, "give up after this long")
	produce := flag.Int("produce", 0, "produce this many records instead of consuming")
	flag.Parse()
	if *produce > 0 {
		os.Exit(produceRecords(*brokers, *topic, *produce, *timeout))
	}

	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(*brokers),
		kgo.ConsumerGroup(*group),
		kgo.ConsumeTopics(*topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(6*time.Second),
		kgo.HeartbeatInterval(1*time.Second),
		kgo.FetchMaxWait(500*time.Millisecond),
	}, securityOpts()...)...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ERR client:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*timeout)*time.Millisecond)
	defer cancel()

	var processed []*kgo.Record
	lastRecord := time.Time{}
	for len(processed) < *max && ctx.Err() == nil {
		if !lastRecord.IsZero() && time.Since(lastRecord) > time.Duration(*idle)*time.Millisecond {
			break
		}
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := cl.PollRecords(pctx, *max-len(processed))
		pcancel()
		fetches.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded && err != context.Canceled {
				fmt.Fprintf(os.Stderr, "ERR fetch %s/%d: %v\n", t, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			if len(processed) >= *max {
				return // never happens: PollRecords returns at most max-len(processed)
			}
			fmt.Printf("R %d %d %s\n", r.Partition, r.Offset, r.Value)
			processed = append(processed, r)
			lastRecord = time.Now()
		})
	}
	if len(processed) > 0 {
		cctx, ccancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := cl.CommitRecords(cctx, processed...)
		ccancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ERR commit:", err)
			os.Exit(3)
		}
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 15*time.Second)
	if err := cl.LeaveGroupContext(lctx); err != nil {
		fmt.Fprintln(os.Stderr, "ERR leave:", err)
	}
	lcancel()
	cl.Close()
	fmt.Printf("DONE %d\n", len(processed))
}

func produceRecords(brokers, topic string, n, timeoutMs int) int {
	opts := append([]kgo.Opt{kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(topic)}, securityOpts()...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ERR client:", err)
		return 2
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeoutMs)*time.Millisecond)
	defer cancel()
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("franz-%d", i))}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) { errs <- err })
	}
	failed := 0
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			failed++
			if failed <= 3 {
				fmt.Fprintln(os.Stderr, "ERR produce:", err)
			}
		}
	}
	if failed > 0 {
		return 1
	}
	fmt.Printf("PRODUCED %d\n", n)
	return 0
}
