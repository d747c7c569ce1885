// The constrained-decoding benchmark's request and schema (scripts/bench-grammar.sh reads them too).
export const REQUEST = 'Describe a fictional person: name, age, city, hobbies.';
export const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 24 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    city: { type: 'string', maxLength: 24 },
    hobbies: { type: 'array', items: { type: 'string', maxLength: 16 }, maxItems: 3 },
  },
  required: ['name', 'age', 'city', 'hobbies'],
  additionalProperties: false,
};
