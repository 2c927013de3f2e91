import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';

type SerializerFactory = ReturnType<typeof SerializerSelector>;

/**
 * Fastify's response serializers (fast-json-stringify, as by default), each compiled the first time
 * its route answers with that status, not all of them as the app starts: compiling every documented
 * answer of every route was the largest part of building the app (about 0.4 s), and a process uses
 * few of them (a test app, a replica serving one kind of request). The serializers are the same.
 */
export const lazySerializers: SerializerFactory = (...factoryArgs) => {
  const build = SerializerSelector()(...factoryArgs);
  return (route) => {
    let serialize: ((data: unknown) => string) | undefined;
    return (data: unknown) => (serialize ??= build(route))(data);
  };
};
