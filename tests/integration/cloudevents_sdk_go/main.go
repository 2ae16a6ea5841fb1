// Command cloudevents_sdk_go is what an upstream team does with the official
// CloudEvents SDK for Go (sdk-go v2) and its Kafka binding (kafka_sarama, on
// IBM/sarama): the Go twin of tests/integration/cloudevents_sdk.py, used by
// tests/integration/test_cloudevents_sdk.sh.
//
//	cloudevents-sdk-go produce TOPIC MODE CE_ID TYPE KEY DATA_JSON
//	    MODE: binary | structured | structured-bytes (data given as []byte,
//	    so the SDK writes data_base64). Sends one event through the SDK's
//	    client and kafka_sarama sender, waits for the broker, and prints one
//	    JSON line of what went out: mode, key, headers.
//	cloudevents-sdk-go consume TOPIC MIN_RECORDS TIMEOUT_S
//	    Reads every partition of TOPIC from the beginning and parses every
//	    record with the binding (NewMessageFromConsumerMessage, ToEvent);
//	    prints one JSON line per record: the encoding the SDK saw, the mode it
//	    was read in, attributes, Kafka key and data. Stops once MIN_RECORDS
//	    were read and the topic is idle for 2 s, or at the timeout; exits 1
//	    when a record does not parse.
//
// Bootstrap servers from KAFKA_BOOTSTRAP_SERVERS (comma-separated). Built by
// tests/integration/cloudevents_sdk_go/build into <repo>/.cache/interop/bin.
// A watchdog ends the process after 60 s (produce) or TIMEOUT_S + 30 s
// (consume), so an unreachable broker never hangs the test.
//
// main_test.go checks the three modes and the parsing without a broker:
//
//	GOPATH=<repo>/.cache/go GOFLAGS=-modcacherw GOTOOLCHAIN=local go test
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
)

const usage = `usage: cloudevents-sdk-go produce TOPIC MODE CE_ID TYPE KEY DATA_JSON
       cloudevents-sdk-go consume TOPIC MIN_RECORDS TIMEOUT_S
(bootstrap servers from KAFKA_BOOTSTRAP_SERVERS)`

func main() {
	args := os.Args[1:]
	var err error
	switch {
	case len(args) == 7 && args[0] == "produce":
		watchdog(60 * time.Second)
		err = produce(args[1], args[2], args[3], args[4], args[5], args[6])
	case len(args) == 4 && args[0] == "consume":
		minRecords, err1 := strconv.Atoi(args[2])
		timeout, err2 := strconv.ParseFloat(args[3], 64)
		if err1 != nil || err2 != nil || minRecords < 0 || timeout <= 0 {
			fail(usage)
		}
		limit := time.Duration(timeout * float64(time.Second))
		watchdog(limit + 30*time.Second)
		err = consume(args[1], minRecords, limit)
	default:
		fail(usage)
	}
	if err != nil {
		fail("cloudevents-sdk-go: " + err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(1)
}

// watchdog ends the process once d has passed, whatever it is blocked on
// (sarama's dials and metadata retries have timeouts of their own, but
// several of them in a row could outlast the test).
func watchdog(d time.Duration) {
	time.AfterFunc(d, func() {
		fmt.Fprintf(os.Stderr, "cloudevents-sdk-go: gave up after %s\n", d)
		os.Exit(2)
	})
}

func brokers() ([]string, error) {
	v := os.Getenv("KAFKA_BOOTSTRAP_SERVERS")
	if v == "" {
		return nil, fmt.Errorf("KAFKA_BOOTSTRAP_SERVERS is not set")
	}
	return strings.Split(v, ","), nil
}

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "cloudevents-sdk-go"
	c.Net.DialTimeout = 10 * time.Second
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Consumer.Return.Errors = true
	return c
}

// recorder is the SyncProducer under the SDK's sender: it passes every
// message on and keeps the last one, so produce can print what the binding
// wrote (the sender does not expose it).
type recorder struct {
	sarama.SyncProducer
	last *sarama.ProducerMessage
}

func (r *recorder) SendMessage(m *sarama.ProducerMessage) (int32, int64, error) {
	r.last = m
	return r.SyncProducer.SendMessage(m)
}

// sent is what produce prints.
type sent struct {
	Mode    string            `json:"mode"`
	Key     *string           `json:"key"`
	Headers map[string]string `json:"headers"`
}

func produce(topic, mode, id, ceType, key, data string) error {
	bs, err := brokers()
	if err != nil {
		return err
	}
	producer, err := sarama.NewSyncProducer(bs, saramaConfig())
	if err != nil {
		return fmt.Errorf("could not create the producer: %w", err)
	}
	out, err := send(producer, topic, mode, id, ceType, key, data)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// send builds the event and sends it through the SDK's client and the
// binding's sender on producer (which it closes); it returns what went out.
func send(producer sarama.SyncProducer, topic, mode, id, ceType, key, data string) (*sent, error) {
	rec := &recorder{SyncProducer: producer}
	sender, err := kafka_sarama.NewSenderFromSyncProducer(topic, rec)
	if err != nil {
		return nil, err
	}
	defer sender.Close(context.Background())
	if !json.Valid([]byte(data)) {
		return nil, fmt.Errorf("DATA_JSON is not JSON")
	}
	e := cloudevents.NewEvent()
	e.SetID(id)
	e.SetType(ceType)
	e.SetSource("sdk/go")
	// The binding takes the Kafka key from the partitionkey extension, as the
	// Python SDK's binding does.
	e.SetExtension("partitionkey", key)
	ctx := context.Background()
	switch mode {
	case "binary":
		err = e.SetData(cloudevents.ApplicationJSON, json.RawMessage(data))
	case "structured":
		err = e.SetData(cloudevents.ApplicationJSON, json.RawMessage(data))
		ctx = binding.WithForceStructured(ctx)
	case "structured-bytes":
		// A []byte is data the SDK does not look into: data_base64.
		err = e.SetData(cloudevents.ApplicationJSON, []byte(data))
		ctx = binding.WithForceStructured(ctx)
	default:
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return nil, err
	}
	client, err := cloudevents.NewClient(sender, cloudevents.WithTimeNow())
	if err != nil {
		return nil, err
	}
	if res := client.Send(ctx, e); !cloudevents.IsACK(res) {
		return nil, fmt.Errorf("not delivered: %w", res)
	}

	out := &sent{Mode: mode, Headers: map[string]string{}}
	if rec.last.Key != nil {
		b, err := rec.last.Key.Encode()
		if err != nil {
			return nil, err
		}
		k := string(b)
		out.Key = &k
	}
	for _, h := range rec.last.Headers {
		out.Headers[string(h.Key)] = string(h.Value)
	}
	return out, nil
}

// parsed is what consume prints for a record that parses.
type parsed struct {
	Encoding string          `json:"encoding"` // what the binding saw: binary, structured, unknown
	Mode     string          `json:"mode"`     // how the record was read: binary or structured
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Source   string          `json:"source"`
	Subject  *string         `json:"subject"`
	Key      *string         `json:"key"`
	Data     json.RawMessage `json:"data"`
}

// parse reads one record with the SDK's Kafka binding. The binding tells the
// mode by the content type (application/cloudevents+json: structured) or a
// ce_specversion header (binary). A structured event whose content type is
// the data's (the Python SDK's structured mode: application/json, no ce_
// headers) is neither to it, so, as an SDK user must, such a record is read
// as structured: the same message with the event format's media type.
func parse(cm *sarama.ConsumerMessage) (*parsed, error) {
	m := kafka_sarama.NewMessageFromConsumerMessage(cm)
	p := &parsed{Encoding: m.ReadEncoding().String(), Mode: "binary"}
	switch m.ReadEncoding() {
	case binding.EncodingStructured:
		p.Mode = "structured"
	case binding.EncodingUnknown:
		p.Mode = "structured"
		m = kafka_sarama.NewMessage(cm.Value, format.JSON.MediaType(), m.Headers)
	}
	e, err := binding.ToEvent(context.Background(), m)
	if err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	p.ID, p.Type, p.Source = e.ID(), e.Type(), e.Source()
	if s := e.Subject(); s != "" {
		p.Subject = &s
	}
	if cm.Key != nil {
		k := string(cm.Key)
		p.Key = &k
	}
	// Data as JSON when it is JSON (data_base64 arrives decoded), else as a
	// JSON string.
	if d := e.Data(); json.Valid(d) {
		p.Data = d
	} else if p.Data, err = json.Marshal(string(d)); err != nil {
		return nil, err
	}
	return p, nil
}

func consume(topic string, minRecords int, timeout time.Duration) error {
	bs, err := brokers()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	client, err := sarama.NewClient(bs, saramaConfig())
	if err != nil {
		return fmt.Errorf("could not connect: %w", err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer consumer.Close()
	partitions, err := client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("could not list the partitions of %q: %w", topic, err)
	}

	// Every partition from its first record into one channel.
	records := make(chan *sarama.ConsumerMessage)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, id := range partitions {
		pc, err := consumer.ConsumePartition(topic, id, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("could not consume %s/%d: %w", topic, id, err)
		}
		defer pc.AsyncClose()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case m := <-pc.Messages():
					select {
					case records <- m:
					case <-done:
						return
					}
				case perr := <-pc.Errors():
					fmt.Fprintf(os.Stderr, "cloudevents-sdk-go: %s/%d: %v\n", topic, id, perr)
				case <-done:
					return
				}
			}
		}()
	}
	defer wg.Wait()
	defer close(done)

	seen, bad, last := 0, 0, time.Now()
	out := json.NewEncoder(os.Stdout)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case cm := <-records:
			last = time.Now()
			seen++
			p, err := parse(cm)
			if err != nil { // the SDK could not read the record
				bad++
				_ = out.Encode(map[string]string{"error": err.Error()})
				continue
			}
			if err := out.Encode(p); err != nil {
				return err
			}
		case <-tick.C:
			if seen >= minRecords && time.Since(last) > 2*time.Second {
				return result(bad)
			}
		}
	}
	return result(bad)
}

func result(bad int) error {
	if bad > 0 {
		return fmt.Errorf("%d records did not parse", bad)
	}
	return nil
}
