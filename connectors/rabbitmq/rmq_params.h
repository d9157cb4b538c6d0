/* Parameter rows shared by the RabbitMQ connector's tables: one macro per
 * queue or exchange option, used by publishMessage, sendRpc (request and
 * reply queue) and the inbound endpoint, each with its own parameter name,
 * struct and flags.  T_ is the parameter struct, F_ the rmq_queue_opts_t /
 * rmq_exchange_opts_t member in it. */
#ifndef RMQ_PARAMS_H
#define RMQ_PARAMS_H

#include "rmq.h"

extern const char *const rmq_queue_type_names[];
extern const char *const rmq_overflow_names[];
extern const char *const rmq_exchange_type_names[];
extern const char *const rmq_body_type_names[];
extern const char *const rmq_dls_names[];
extern const char *const rmq_classic_version_names[];

#define RMQ_ROW_QUEUE(N_, T_, F_, FL_, DESC_) CMI_PARAM(N_, CMI_PARAM_STRING, FL_, T_, F_.name, NULL, DESC_)
#define RMQ_ROW_QUEUE_AUTO_DECLARE(N_, T_, F_, FL_)                                                        \
    CMI_PARAM(N_, CMI_PARAM_BOOL, FL_, T_, F_.auto_declare, "true", "declare the queue (durable) first")
#define RMQ_ROW_QUEUE_TYPE(N_, T_, F_, FL_)                                                                \
    CMI_PARAM_CHOICE(N_, FL_, T_, F_.type, "QUORUM",                                                       \
                     "queue type (not given: a missing queue is declared QUORUM, an existing one is used as it is)", \
                     rmq_queue_type_names)
#define RMQ_ROW_QUEUE_ARGUMENTS(N_, T_, F_, FL_)                                                           \
    CMI_PARAM(N_, CMI_PARAM_STRING, FL_, T_, F_.arguments, NULL,                                          \
              "k=v,k=v: more queue arguments (typed: true/false, numbers, text)")
#define RMQ_ROW_MAX_PRIORITY(N_, T_, F_, FL_)                                                              \
    CMI_PARAM_RANGE(N_, CMI_PARAM_INT, FL_, T_, F_.max_priority, NULL, "x-max-priority (classic)", 1, 255)
#define RMQ_ROW_INITIAL_MEMBER_COUNT(N_, T_, F_, FL_)                                                      \
    CMI_PARAM_RANGE(N_, CMI_PARAM_INT, FL_, T_, F_.initial_member_count, NULL,                            \
                    "x-quorum-initial-group-size (quorum)", 1, 1000)
#define RMQ_ROW_DELIVERY_LIMIT(N_, T_, F_, FL_)                                                            \
    CMI_PARAM_RANGE(N_, CMI_PARAM_INT, FL_, T_, F_.delivery_limit, NULL, "x-delivery-limit (quorum)", 0,  \
                    1000000000)
#define RMQ_ROW_DEAD_LETTER_STRATEGY(N_, T_, F_, FL_)                                                      \
    CMI_PARAM_CHOICE(N_, FL_, T_, F_.dead_letter_strategy, NULL, "x-dead-letter-strategy (quorum)",        \
                     rmq_dls_names)
#define RMQ_ROW_MAX_AGE(N_, T_, F_, FL_)                                                                   \
    CMI_PARAM(N_, CMI_PARAM_STRING, FL_, T_, F_.max_age, NULL, "x-max-age (stream), e.g. 7D")
#define RMQ_ROW_MAX_SEGMENT_SIZE(N_, T_, F_, FL_)                                                          \
    CMI_PARAM_RANGE(N_, CMI_PARAM_INT, FL_, T_, F_.max_segment_size, NULL,                                \
                    "x-stream-max-segment-size-bytes (stream)", 1, INT64_MAX)
#define RMQ_ROW_QUEUE_EXCLUSIVE(N_, T_, F_, FL_)                                                           \
    CMI_PARAM(N_, CMI_PARAM_BOOL, FL_, T_, F_.exclusive, "false", "exclusive queue")
#define RMQ_ROW_QUEUE_AUTO_DELETE(N_, T_, F_, FL_)                                                         \
    CMI_PARAM(N_, CMI_PARAM_BOOL, FL_, T_, F_.auto_delete, "false", "auto-delete queue")
#define RMQ_ROW_QUEUE_OVERFLOW(N_, T_, F_, FL_)                                                            \
    CMI_PARAM_CHOICE(N_, FL_, T_, F_.overflow, NULL, "x-overflow", rmq_overflow_names)
#define RMQ_ROW_CLASSIC_VERSION(N_, T_, F_, FL_)                                                           \
    CMI_PARAM_CHOICE(N_, FL_, T_, F_.classic_version, NULL,                                               \
                     "x-queue-version (classic; sent only when given: RabbitMQ's default is V2)",          \
                     rmq_classic_version_names)

/* Every queue option at rows BASE_.. with the names MI gives them there
 * (P_ "queue" or "replyToQueue"; the first row's description DESC_). */
#define RMQ_QUEUE_ROWS(BASE_, T_, F_, FL_, DESC_, NAME_, AUTO_DECLARE_, TYPE_, ARGUMENTS_, MAX_PRIORITY_, MEMBERS_, \
                       DELIVERY_LIMIT_, DLS_, MAX_AGE_, SEGMENT_, EXCLUSIVE_, AUTO_DELETE_, OVERFLOW_, VERSION_)    \
    [(BASE_) + RMQ_Q_NAME] = RMQ_ROW_QUEUE(NAME_, T_, F_, FL_, DESC_),                                           \
    [(BASE_) + RMQ_Q_AUTO_DECLARE] = RMQ_ROW_QUEUE_AUTO_DECLARE(AUTO_DECLARE_, T_, F_, FL_),                     \
    [(BASE_) + RMQ_Q_TYPE] = RMQ_ROW_QUEUE_TYPE(TYPE_, T_, F_, FL_),                                             \
    [(BASE_) + RMQ_Q_ARGUMENTS] = RMQ_ROW_QUEUE_ARGUMENTS(ARGUMENTS_, T_, F_, FL_),                              \
    [(BASE_) + RMQ_Q_MAX_PRIORITY] = RMQ_ROW_MAX_PRIORITY(MAX_PRIORITY_, T_, F_, FL_),                           \
    [(BASE_) + RMQ_Q_INITIAL_MEMBER_COUNT] = RMQ_ROW_INITIAL_MEMBER_COUNT(MEMBERS_, T_, F_, FL_),                \
    [(BASE_) + RMQ_Q_DELIVERY_LIMIT] = RMQ_ROW_DELIVERY_LIMIT(DELIVERY_LIMIT_, T_, F_, FL_),                     \
    [(BASE_) + RMQ_Q_DEAD_LETTER_STRATEGY] = RMQ_ROW_DEAD_LETTER_STRATEGY(DLS_, T_, F_, FL_),                    \
    [(BASE_) + RMQ_Q_MAX_AGE] = RMQ_ROW_MAX_AGE(MAX_AGE_, T_, F_, FL_),                                          \
    [(BASE_) + RMQ_Q_MAX_SEGMENT_SIZE] = RMQ_ROW_MAX_SEGMENT_SIZE(SEGMENT_, T_, F_, FL_),                        \
    [(BASE_) + RMQ_Q_EXCLUSIVE] = RMQ_ROW_QUEUE_EXCLUSIVE(EXCLUSIVE_, T_, F_, FL_),                              \
    [(BASE_) + RMQ_Q_AUTO_DELETE] = RMQ_ROW_QUEUE_AUTO_DELETE(AUTO_DELETE_, T_, F_, FL_),                        \
    [(BASE_) + RMQ_Q_OVERFLOW] = RMQ_ROW_QUEUE_OVERFLOW(OVERFLOW_, T_, F_, FL_),                                 \
    [(BASE_) + RMQ_Q_CLASSIC_VERSION] = RMQ_ROW_CLASSIC_VERSION(VERSION_, T_, F_, FL_)

#define RMQ_ROW_EXCHANGE(N_, T_, F_, FL_, DESC_) CMI_PARAM(N_, CMI_PARAM_STRING, FL_, T_, F_.name, NULL, DESC_)
#define RMQ_ROW_EXCHANGE_AUTO_DECLARE(N_, T_, F_, FL_)                                                     \
    CMI_PARAM(N_, CMI_PARAM_BOOL, FL_, T_, F_.auto_declare, "true", "declare the exchange (durable; not amq.*)")
#define RMQ_ROW_EXCHANGE_TYPE(N_, T_, F_, FL_)                                                             \
    CMI_PARAM_CHOICE(N_, FL_, T_, F_.type, "DIRECT", "exchange type", rmq_exchange_type_names)
#define RMQ_ROW_ROUTING_KEY(N_, T_, F_, FL_)                                                               \
    CMI_PARAM(N_, CMI_PARAM_STRING, FL_, T_, F_.routing_key, NULL, "routing key")
#define RMQ_ROW_EXCHANGE_ARGUMENTS(N_, T_, F_, FL_)                                                        \
    CMI_PARAM(N_, CMI_PARAM_STRING, FL_, T_, F_.arguments, NULL, "k=v,k=v: exchange arguments")
#define RMQ_ROW_HEADER_EXCHANGE_ARGUMENTS(N_, T_, F_, FL_)                                                 \
    CMI_PARAM(N_, CMI_PARAM_STRING, FL_, T_, F_.header_arguments, NULL,                                    \
              "k=v,k=v: binding arguments (x-match=all,...)")
#define RMQ_ROW_EXCHANGE_AUTO_DELETE(N_, T_, F_, FL_)                                                      \
    CMI_PARAM(N_, CMI_PARAM_BOOL, FL_, T_, F_.auto_delete, "false", "auto-delete exchange")

/* Every exchange option at rows BASE_.. with the names MI gives them there. */
#define RMQ_EXCHANGE_ROWS(BASE_, T_, F_, FL_, DESC_, NAME_, AUTO_DECLARE_, TYPE_, KEY_, ARGUMENTS_, HEADER_ARGS_,    \
                          AUTO_DELETE_)                                                                            \
    [(BASE_) + RMQ_X_NAME] = RMQ_ROW_EXCHANGE(NAME_, T_, F_, FL_, DESC_),                                         \
    [(BASE_) + RMQ_X_AUTO_DECLARE] = RMQ_ROW_EXCHANGE_AUTO_DECLARE(AUTO_DECLARE_, T_, F_, FL_),                   \
    [(BASE_) + RMQ_X_TYPE] = RMQ_ROW_EXCHANGE_TYPE(TYPE_, T_, F_, FL_),                                           \
    [(BASE_) + RMQ_X_ROUTING_KEY] = RMQ_ROW_ROUTING_KEY(KEY_, T_, F_, FL_),                                       \
    [(BASE_) + RMQ_X_ARGUMENTS] = RMQ_ROW_EXCHANGE_ARGUMENTS(ARGUMENTS_, T_, F_, FL_),                            \
    [(BASE_) + RMQ_X_HEADER_ARGUMENTS] = RMQ_ROW_HEADER_EXCHANGE_ARGUMENTS(HEADER_ARGS_, T_, F_, FL_),            \
    [(BASE_) + RMQ_X_AUTO_DELETE] = RMQ_ROW_EXCHANGE_AUTO_DELETE(AUTO_DELETE_, T_, F_, FL_)

#endif
